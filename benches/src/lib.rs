//! Shared inputs for the criterion benches in `benches/benches/`: frames built with the
//! codecs' own encoder, so every bench decodes the same bytes.

use fleetgate_codecs::teltonika::encode::{IoElement, Record, avl_packet};

/// The largest AVL packet, preamble to CRC, that both fleetgate (1280 bytes of data by
/// default) and nom-teltonika (1280 bytes in all) accept: it bounds a "full" frame.
pub const MAX_AVL_PACKET: usize = 1280;

/// A typical FMB record: ignition, movement, GSM signal, sleep mode, GNSS status,
/// input, output; voltages, speed, DOPs; odometers and operator; iButton. Codec 8E adds
/// a 7-byte beacon element. Values change from record to record.
pub fn typical_record(codec: u8, index: u32) -> Record {
    let mut io = vec![
        (239, IoElement::U8(1)),
        (240, IoElement::U8((index % 2) as u8)),
        (21, IoElement::U8(4)),
        (200, IoElement::U8(0)),
        (69, IoElement::U8(1)),
        (1, IoElement::U8(1)),
        (179, IoElement::U8(0)),
        (66, IoElement::U16(13_800 + index as u16)),
        (67, IoElement::U16(4_100)),
        (68, IoElement::U16(0)),
        (24, IoElement::U16(52)),
        (181, IoElement::U16(9)),
        (182, IoElement::U16(7)),
        (16, IoElement::U32(123_456 + index * 15)),
        (199, IoElement::U32(index * 15)),
        (241, IoElement::U32(24_602)),
        (78, IoElement::U64(0x0102_0304_0506_0708)),
    ];
    if codec == fleetgate_codecs::teltonika::CODEC_8E {
        io.push((385, IoElement::Bytes(vec![0xAB; 7])));
    }
    Record {
        time_ms: 1_700_000_000_000 + u64::from(index) * 1000,
        priority: 0,
        lon: 252_800_000 + index as i32 * 10,
        lat: 546_900_000 + index as i32 * 7,
        altitude: 110,
        course: 90,
        satellites: 9,
        speed: 52,
        event_io: 0,
        generation: 7,
        io,
    }
}

/// A TCP AVL packet of `records` typical records, or with as many as fit
/// [`MAX_AVL_PACKET`] when `None`; returns the packet and its record count.
pub fn teltonika_frame(codec: u8, records: Option<usize>) -> (Vec<u8>, usize) {
    let build = |n: usize| {
        let records: Vec<Record> = (0..n as u32).map(|i| typical_record(codec, i)).collect();
        avl_packet(codec, &records).to_vec()
    };
    match records {
        Some(n) => (build(n), n),
        None => {
            let n = (1..=255).take_while(|&n| build(n).len() <= MAX_AVL_PACKET).last().unwrap_or(1);
            (build(n), n)
        }
    }
}

/// A typical Wialon IPS record: a fix, hdop, inputs and outputs, two ADCs, an iButton and
/// six parameters of the three types, one with a Cyrillic name.
pub fn wialon_record(index: u32) -> fleetgate_codecs::wialon::encode::Record {
    use fleetgate_codecs::wialon::encode::{Param, Record};
    Record {
        time_s: Some(1_700_000_000 + i64::from(index)),
        lat: Some(55.743375 + f64::from(index) * 1e-5),
        lon: Some(37.66139),
        speed: Some(52.5),
        course: Some(90.0),
        altitude: Some(150.0),
        satellites: Some(11),
        hdop: Some(0.9),
        inputs: Some(5),
        outputs: Some(1),
        adc: vec![14.77, 0.02],
        ibutton: Some("AB45DF01145".into()),
        params: vec![
            ("odo".into(), Param::Double(123_456.7 + f64::from(index))),
            ("total_fuel".into(), Param::Int(430_087)),
            ("can_rpm".into(), Param::Int(1800)),
            ("pwr_ext".into(), Param::Double(13.81)),
            ("fw".into(), Param::Text("V4.5".into())),
            ("Топливо".into(), Param::Double(45.8)),
        ],
    }
}
