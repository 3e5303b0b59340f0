//! AVL data: the records of codecs 8, 8 Extended, 16 and the older GH3000 codec 7,
//! decoded into a [`Batch`] with the kit's nom parsers. Framing (preamble, length, CRC)
//! is done before this runs.

use nom::Parser;
use nom::combinator::cond;

use super::io_map::{map_gh3000_io, map_io};
use crate::attrs::Attr;
use crate::kit::{self, Parsed, Reason, be_i16, be_i32, be_u8, be_u16, be_u32, be_u64, be_uint, offset, take};
use crate::position::{AttrValue, Batch, Fix, IoKey, IoValue, Span};
use crate::time::{MAX_TIME_MS, UtcMillis};

/// Codec ids of AVL data packets.
pub const CODEC_7: u8 = 0x07;
/// Codec 8.
pub const CODEC_8: u8 = 0x08;
/// Codec 8 Extended.
pub const CODEC_8E: u8 = 0x8E;
/// Codec 16.
pub const CODEC_16: u8 = 0x10;

/// Why AVL data was refused, with the offset (within the frame) of the failing field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AvlError {
    pub at: usize,
    pub message: String,
}

impl AvlError {
    /// The error of a kit parser that failed inside `data`, in record `record` of
    /// `n_records`.
    fn of(data: &[u8], record: usize, n_records: u8, error: kit::Error<'_>) -> Self {
        let at = offset(data, error.rest);
        let message = match error.reason {
            Reason::Short { wanted } => format!(
                "record {} of {n_records} runs past the end of the data (needed {wanted} more bytes at offset {at})",
                record + 1
            ),
            Reason::Invalid(message) => message,
            Reason::Nom(_) | Reason::Checksum { .. } => {
                format!("record {} of {n_records} does not read at offset {at}", record + 1)
            }
        };
        AvlError { at, message }
    }
}

/// Field widths of one record layout.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Element counts are 2 bytes (8E) instead of 1.
    wide: bool,
    /// The event IO id and element ids are 2 bytes (8E, 16) instead of 1.
    wide_ids: bool,
    /// A generation-type byte follows the event id (codec 16).
    generation: bool,
    /// A variable-length element group follows the 8-byte group (8E).
    variable: bool,
    /// A 16-byte element group follows the 8-byte group: a codec 8 firmware variant seen
    /// in the field, recognised when the standard layout does not fit the CRC-checked data.
    sixteen: bool,
}

const LAYOUT_8: Layout = Layout { wide: false, wide_ids: false, generation: false, variable: false, sixteen: false };
const LAYOUT_8_WITH_16: Layout = Layout { sixteen: true, ..LAYOUT_8 };
const LAYOUT_8E: Layout = Layout { wide: true, wide_ids: true, generation: false, variable: true, sixteen: false };
const LAYOUT_16: Layout = Layout { wide: false, wide_ids: true, generation: true, variable: false, sixteen: false };

/// Smallest possible record per codec, to refuse an impossible count before decoding.
fn min_record_len(codec: u8) -> usize {
    match codec {
        // time 8, priority 1, gps 15, event id 2, total 2, four counts 2 each, nx count 2
        CODEC_8E => 8 + 1 + 15 + 2 + 2 + 8 + 2,
        // event id 2, generation 1, total 1, four counts 1 each
        CODEC_16 => 8 + 1 + 15 + 2 + 1 + 1 + 4,
        // time 4, global mask 1
        CODEC_7 => 5,
        _ => 8 + 1 + 15 + 1 + 1 + 4,
    }
}

/// Decodes the AVL data `frame[start..end]` (codec id through the trailing record
/// count) into `batch` and returns the number of records.
pub(crate) fn decode_avl(frame: &[u8], start: usize, end: usize, batch: &mut Batch) -> Result<u8, AvlError> {
    let data = &frame[..end];
    let Ok((records, (codec, n_records))) = (be_u8, be_u8).parse_complete(&data[start..]) else {
        return Err(AvlError { at: start, message: "AVL data shorter than its header".into() });
    };
    if n_records == 0 {
        return Err(AvlError { at: start + 1, message: "record count is 0".into() });
    }
    let body = end - start - 3;
    if usize::from(n_records) * min_record_len(codec) > body {
        return Err(AvlError {
            at: start + 1,
            message: format!(
                "impossible record count {n_records}: {body} bytes of records cannot hold them (codec 0x{codec:02X})"
            ),
        });
    }
    let layouts: &[Layout] = match codec {
        CODEC_8 => &[LAYOUT_8, LAYOUT_8_WITH_16],
        CODEC_8E => &[LAYOUT_8E],
        CODEC_16 => &[LAYOUT_16],
        CODEC_7 => &[],
        other => return Err(AvlError { at: start, message: format!("unsupported codec 0x{other:02X}") }),
    };
    // Every IO element takes at least two bytes (id and value), and the attributes are
    // fewer than the elements plus the record headers: this bounds both arrays.
    batch.reserve(usize::from(n_records), body / 2 + 3 * usize::from(n_records));
    let mark = batch.mark();
    if codec == CODEC_7 {
        let result =
            decode_gh3000_records(data, records, n_records, batch).and_then(|rest| trailer(data, rest, n_records));
        if result.is_err() {
            batch.rollback(mark);
        }
        return result.map(|()| n_records);
    }
    let mut first_error = None;
    for layout in layouts {
        let result =
            decode_records(data, records, *layout, n_records, batch).and_then(|rest| trailer(data, rest, n_records));
        match result {
            Ok(()) => return Ok(n_records),
            Err(error) => {
                batch.rollback(mark);
                first_error.get_or_insert(error);
            }
        }
    }
    Err(first_error.unwrap_or(AvlError { at: start, message: "no record layout fits".into() }))
}

/// The records must end exactly at the trailing count, and the count must repeat.
fn trailer(data: &[u8], rest: &[u8], n_records: u8) -> Result<(), AvlError> {
    let at = offset(data, rest);
    match rest {
        [count] if *count == n_records => Ok(()),
        [count] => Err(AvlError {
            at,
            message: format!("record count mismatch: header says {n_records}, trailer says {count}"),
        }),
        [] => Err(AvlError { at, message: "records run into the trailing record count".into() }),
        _ => Err(AvlError { at, message: format!("{} unexpected bytes after record {n_records}", rest.len() - 1) }),
    }
}

/// A count or id of 1 byte, or 2 when `wide`.
#[inline(always)]
fn count(wide: bool) -> impl Fn(&[u8]) -> Parsed<'_, u16> {
    move |input: &[u8]| if wide { be_u16(input) } else { be_u8.map(u16::from).parse_complete(input) }
}

/// A device time in milliseconds; refused past year 9999.
#[inline]
fn time_ms(input: &[u8]) -> Parsed<'_, UtcMillis> {
    let (rest, time_ms) = be_u64(input)?;
    if time_ms > MAX_TIME_MS as u64 {
        return kit::invalid(input, format!("timestamp {time_ms} ms is beyond year 9999"));
    }
    Ok((rest, UtcMillis(time_ms as i64)))
}

/// The records of `input` (after the header, within `data`) into `batch`; the input
/// after them.
fn decode_records<'a>(
    data: &'a [u8],
    mut input: &'a [u8],
    layout: Layout,
    n_records: u8,
    batch: &mut Batch,
) -> Result<&'a [u8], AvlError> {
    for record in 0..usize::from(n_records) {
        input = decode_record(data, input, layout, batch)
            .map_err(|error| AvlError::of(data, record, n_records, kit::failure(error)))?
            .0;
    }
    Ok(input)
}

/// One record: time, priority, GPS element, event IO id (and generation), then the IO
/// element groups the layout has. `data` is the frame, for the spans of byte values.
#[inline]
fn decode_record<'a>(data: &'a [u8], input: &'a [u8], layout: Layout, batch: &mut Batch) -> Parsed<'a, ()> {
    let (input, (time, priority, lon, lat, altitude, course, satellites, speed)) =
        (time_ms, be_u8, be_i32, be_i32, be_i16, be_u16, be_u8, be_u16).parse_complete(input)?;
    // The total element count repeats the group counts; it is redundant, so a device
    // whose total disagrees with its groups is still decoded.
    let (mut input, (event_io, generation, _total)) =
        (count(layout.wide_ids), cond(layout.generation, be_u8), count(layout.wide)).parse_complete(input)?;

    let (lat, lon) = (kit::coordinates::from_1e7(lat), kit::coordinates::from_1e7(lon));
    let mut fix = Fix::at(time);
    fix.coordinates = Some((lat, lon));
    fix.altitude = Some(f64::from(altitude));
    fix.speed = Some(f64::from(speed));
    fix.course = Some(f64::from(course));
    fix.satellites = Some(u16::from(satellites));
    // Teltonika has no validity flag: a record without satellites in use, or at the
    // null island a device reports before its first fix, is not a fix.
    fix.valid = satellites > 0 && !(lat == 0.0 && lon == 0.0);
    batch.push_fix(fix);
    batch.push_attr(Attr::Priority, AttrValue::Int(i64::from(priority)));
    batch.push_attr(Attr::EventIo, AttrValue::Int(i64::from(event_io)));
    if let Some(generation) = generation {
        batch.push_attr(Attr::Generation, AttrValue::Int(i64::from(generation)));
    }

    for size in [1usize, 2, 4, 8] {
        let n;
        (input, n) = count(layout.wide)(input)?;
        for _ in 0..n {
            let (id, value);
            (input, (id, value)) = (count(layout.wide_ids), be_uint(size)).parse_complete(input)?;
            batch.push_io(IoKey::Id(id), IoValue::Uint(value));
            map_io(id, value, batch);
        }
    }
    if layout.variable {
        let n;
        (input, n) = be_u16(input)?;
        for _ in 0..n {
            let (id, bytes);
            (input, (id, bytes)) = (be_u16, be_u16.flat_map(|len| take(usize::from(len)))).parse_complete(input)?;
            batch.push_io(IoKey::Id(id), IoValue::Bytes(span(data, bytes)));
        }
    }
    if layout.sixteen {
        let n;
        (input, n) = be_u8(input)?;
        for _ in 0..n {
            let (id, bytes);
            (input, (id, bytes)) = (be_u8, take(16)).parse_complete(input)?;
            batch.push_io(IoKey::Id(u16::from(id)), IoValue::Bytes(span(data, bytes)));
        }
    }
    Ok((input, ()))
}

/// The span of `part`, a slice of `data`, within it.
fn span(data: &[u8], part: &[u8]) -> Span {
    let start = kit::position_of(data, part);
    Span::new(start..start + part.len())
}

/// Seconds from the Unix epoch to 2007-01-01, the GH3000 time origin.
const GH3000_EPOCH_S: i64 = 1_167_609_600;

fn decode_gh3000_records<'a>(
    data: &'a [u8],
    mut input: &'a [u8],
    n_records: u8,
    batch: &mut Batch,
) -> Result<&'a [u8], AvlError> {
    for record in 0..usize::from(n_records) {
        input = decode_gh3000_record(input, batch)
            .map_err(|error| AvlError::of(data, record, n_records, kit::failure(error)))?
            .0;
    }
    Ok(input)
}

/// One GH3000 record: a 30-bit time in seconds since 2007 (the top two bits are the
/// priority), a global mask saying which groups follow, and a location mask saying
/// which location fields follow.
fn decode_gh3000_record<'a>(input: &'a [u8], batch: &mut Batch) -> Parsed<'a, ()> {
    let (input, (word, global_mask)) = (be_u32, be_u8).parse_complete(input)?;
    let time = UtcMillis((i64::from(word & 0x3FFF_FFFF) + GH3000_EPOCH_S) * 1000);
    let priority = word >> 30;
    let (mut input, location_mask) = cond(global_mask & 0x01 != 0, be_u8).parse_complete(input)?;
    let has = |bit: u8| location_mask.is_some_and(|mask| mask & bit != 0);
    let (coordinates, altitude, course, speed, satellites, cell, signal, operator);
    (input, (coordinates, altitude, course, speed, satellites, cell, signal, operator)) = (
        cond(has(0x01), (be_u32, be_u32)),
        cond(has(0x02), be_u16),
        cond(has(0x04), be_u8),
        cond(has(0x08), be_u8),
        cond(has(0x10), be_u8),
        cond(has(0x20), (be_u16, be_u16)),
        cond(has(0x40), be_u8),
        cond(has(0x80), be_u32),
    )
        .parse_complete(input)?;
    let mut fix = Fix::at(time);
    // A NaN or infinite float cannot be a position; the record keeps its sensors.
    fix.coordinates = coordinates
        .map(|(lat, lon)| (widen(f32::from_bits(lat)), widen(f32::from_bits(lon))))
        .filter(|(lat, lon)| lat.is_finite() && lon.is_finite());
    fix.altitude = altitude.map(f64::from);
    // One byte for the full circle.
    fix.course = course.map(|c| f64::from(c) * 360.0 / 256.0);
    fix.speed = speed.map(f64::from);
    fix.satellites = satellites.map(u16::from);
    fix.valid = match fix.coordinates {
        Some((lat, lon)) => fix.satellites != Some(0) && (lat, lon) != (0.0, 0.0),
        None => false,
    };
    batch.push_fix(fix);
    batch.push_attr(Attr::Priority, AttrValue::Int(i64::from(priority)));
    if let Some(signal) = signal {
        batch.push_attr(Attr::GsmSignal, AttrValue::Int(i64::from(signal)));
    }
    if let Some(operator) = operator {
        batch.push_attr(Attr::Operator, AttrValue::Int(i64::from(operator)));
    }
    // The cell identifiers have no place in the fix; keep them raw under the names the
    // GH3000 documentation gives them, as pseudo-ids outside the 1-byte IO id range.
    if let Some((lac, cell_id)) = cell {
        batch.push_io(IoKey::Id(GH3000_LAC_ID), IoValue::Uint(u64::from(lac)));
        batch.push_io(IoKey::Id(GH3000_CELL_ID), IoValue::Uint(u64::from(cell_id)));
    }
    for (bit, size) in [(0x02u8, 1usize), (0x04, 2), (0x08, 4)] {
        if global_mask & bit == 0 {
            continue;
        }
        let n;
        (input, n) = be_u8(input)?;
        for _ in 0..n {
            let (id, value);
            (input, (id, value)) = (be_u8, be_uint(size)).parse_complete(input)?;
            batch.push_io(IoKey::Id(u16::from(id)), IoValue::Uint(value));
            map_gh3000_io(u16::from(id), value, batch);
        }
    }
    Ok((input, ()))
}

/// An `f32` as the `f64` with the same shortest decimal form (44.44019, not
/// 44.440189361572266): the device's precision, without binary widening noise.
fn widen(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(f64::NAN)
}

/// `io` key for the GH3000 location area code (real IO ids there are one byte).
pub const GH3000_LAC_ID: u16 = 1000;
/// `io` key for the GH3000 cell id.
pub const GH3000_CELL_ID: u16 = 1001;
