//! AVL data: the records of codecs 8, 8 Extended, 16 and the older GH3000 codec 7,
//! decoded into a [`Batch`]. Framing (preamble, length, CRC) is done before this runs.

use crate::attrs::Attr;
use crate::position::{AttrValue, Batch, Fix, IoKey, IoValue, Span};
use crate::time::{MAX_TIME_MS, UtcMillis};

use super::cursor::{Cursor, Short};
use super::io_map::{map_gh3000_io, map_io};

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
    fn short(record: usize, n_records: u8, short: Short) -> Self {
        AvlError {
            at: short.at,
            message: format!(
                "record {} of {n_records} runs past the end of the data (needed {} more bytes at offset {})",
                record + 1,
                short.wanted,
                short.at
            ),
        }
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
    let mut header = Cursor::new(data, start);
    let (codec, n_records) = match (header.u8(), header.u8()) {
        (Ok(codec), Ok(n)) => (codec, n),
        _ => return Err(AvlError { at: start, message: "AVL data shorter than its header".into() }),
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
        let mut cursor = Cursor::new(data, start + 2);
        let result =
            decode_gh3000_records(&mut cursor, n_records, batch).and_then(|()| trailer(&cursor, data, n_records));
        if result.is_err() {
            batch.rollback(mark);
        }
        return result.map(|()| n_records);
    }
    let mut first_error = None;
    for layout in layouts {
        let mut cursor = Cursor::new(data, start + 2);
        let result =
            decode_records(&mut cursor, *layout, n_records, batch).and_then(|()| trailer(&cursor, data, n_records));
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
fn trailer(cursor: &Cursor<'_>, data: &[u8], n_records: u8) -> Result<(), AvlError> {
    let at = cursor.pos();
    match cursor.remaining() {
        1 if data[at] == n_records => Ok(()),
        1 => Err(AvlError {
            at,
            message: format!("record count mismatch: header says {n_records}, trailer says {}", data[at]),
        }),
        0 => Err(AvlError { at, message: "records run into the trailing record count".into() }),
        n => Err(AvlError { at, message: format!("{} unexpected bytes after record {n_records}", n - 1) }),
    }
}

#[inline(always)]
fn read_count(cursor: &mut Cursor<'_>, wide: bool) -> Result<u16, Short> {
    if wide { cursor.u16() } else { cursor.u8().map(u16::from) }
}

fn check_time(time_ms: u64, at: usize) -> Result<UtcMillis, AvlError> {
    if time_ms > MAX_TIME_MS as u64 {
        return Err(AvlError { at, message: format!("timestamp {time_ms} ms is beyond year 9999") });
    }
    Ok(UtcMillis(time_ms as i64))
}

fn decode_records(cursor: &mut Cursor<'_>, layout: Layout, n_records: u8, batch: &mut Batch) -> Result<(), AvlError> {
    for record in 0..usize::from(n_records) {
        decode_record(cursor, layout, batch).map_err(|e| match e {
            RecordError::Short(short) => AvlError::short(record, n_records, short),
            RecordError::Invalid(error) => error,
        })?;
    }
    Ok(())
}

enum RecordError {
    Short(Short),
    Invalid(AvlError),
}

impl From<Short> for RecordError {
    fn from(short: Short) -> Self {
        RecordError::Short(short)
    }
}

#[inline]
fn decode_record(cursor: &mut Cursor<'_>, layout: Layout, batch: &mut Batch) -> Result<(), RecordError> {
    let time_at = cursor.pos();
    let time = check_time(cursor.u64()?, time_at).map_err(RecordError::Invalid)?;
    let priority = cursor.u8()?;
    let lon = cursor.u32()? as i32;
    let lat = cursor.u32()? as i32;
    let altitude = cursor.u16()? as i16;
    let course = cursor.u16()?;
    let satellites = cursor.u8()?;
    let speed = cursor.u16()?;
    let event_io = read_count(cursor, layout.wide_ids)?;
    let generation = if layout.generation { Some(cursor.u8()?) } else { None };
    // The total element count repeats the group counts; it is redundant, so a device
    // whose total disagrees with its groups is still decoded.
    let _total = read_count(cursor, layout.wide)?;

    let (lat, lon) = (f64::from(lat) / 1e7, f64::from(lon) / 1e7);
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
        let n = read_count(cursor, layout.wide)?;
        for _ in 0..n {
            let id = read_count(cursor, layout.wide_ids)?;
            let value = cursor.uint(size)?;
            batch.push_io(IoKey::Id(id), IoValue::Uint(value));
            map_io(id, value, batch);
        }
    }
    if layout.variable {
        let n = cursor.u16()?;
        for _ in 0..n {
            let id = cursor.u16()?;
            let len = usize::from(cursor.u16()?);
            let at = cursor.pos();
            cursor.take(len)?;
            batch.push_io(IoKey::Id(id), IoValue::Bytes(Span::new(at..at + len)));
        }
    }
    if layout.sixteen {
        let n = cursor.u8()?;
        for _ in 0..n {
            let id = u16::from(cursor.u8()?);
            let at = cursor.pos();
            cursor.take(16)?;
            batch.push_io(IoKey::Id(id), IoValue::Bytes(Span::new(at..at + 16)));
        }
    }
    Ok(())
}

/// Seconds from the Unix epoch to 2007-01-01, the GH3000 time origin.
const GH3000_EPOCH_S: i64 = 1_167_609_600;

fn decode_gh3000_records(cursor: &mut Cursor<'_>, n_records: u8, batch: &mut Batch) -> Result<(), AvlError> {
    for record in 0..usize::from(n_records) {
        decode_gh3000_record(cursor, batch).map_err(|short| AvlError::short(record, n_records, short))?;
    }
    Ok(())
}

/// One GH3000 record: a 30-bit time in seconds since 2007 (the top two bits are the
/// priority), a global mask saying which groups follow, and a location mask saying
/// which location fields follow.
fn decode_gh3000_record(cursor: &mut Cursor<'_>, batch: &mut Batch) -> Result<(), Short> {
    let word = cursor.u32()?;
    let time = UtcMillis((i64::from(word & 0x3FFF_FFFF) + GH3000_EPOCH_S) * 1000);
    let priority = word >> 30;
    let global_mask = cursor.u8()?;
    let mut fix = Fix::at(time);
    let mut cell = None;
    let mut signal = None;
    let mut operator = None;
    if global_mask & 0x01 != 0 {
        let location_mask = cursor.u8()?;
        if location_mask & 0x01 != 0 {
            let lat = f32::from_bits(cursor.u32()?);
            let lon = f32::from_bits(cursor.u32()?);
            let (lat, lon) = (widen(lat), widen(lon));
            // A NaN or infinite float cannot be a position; the record keeps its sensors.
            fix.coordinates = (lat.is_finite() && lon.is_finite()).then_some((lat, lon));
        }
        if location_mask & 0x02 != 0 {
            fix.altitude = Some(f64::from(cursor.u16()?));
        }
        if location_mask & 0x04 != 0 {
            // One byte for the full circle.
            fix.course = Some(f64::from(cursor.u8()?) * 360.0 / 256.0);
        }
        if location_mask & 0x08 != 0 {
            fix.speed = Some(f64::from(cursor.u8()?));
        }
        if location_mask & 0x10 != 0 {
            fix.satellites = Some(u16::from(cursor.u8()?));
        }
        if location_mask & 0x20 != 0 {
            cell = Some((cursor.u16()?, cursor.u16()?));
        }
        if location_mask & 0x40 != 0 {
            signal = Some(cursor.u8()?);
        }
        if location_mask & 0x80 != 0 {
            operator = Some(cursor.u32()?);
        }
    }
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
        let n = cursor.u8()?;
        for _ in 0..n {
            let id = u16::from(cursor.u8()?);
            let value = cursor.uint(size)?;
            batch.push_io(IoKey::Id(id), IoValue::Uint(value));
            map_gh3000_io(id, value, batch);
        }
    }
    Ok(())
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
