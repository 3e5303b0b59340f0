//! The codec kit: the nom 8 parsers protocols have in common, over a frame's bytes (and,
//! in [`text`], a text protocol's fields).
//!
//! Parsers run on a complete frame (framing found its end and checked its checksum
//! first), so they never wait for more input: a field that runs past the end fails with
//! [`Reason::Short`] and how many bytes it wanted. Every failure keeps the input it could
//! not read ([`Error::rest`]); [`offset`] turns that into the field's offset in the frame,
//! so a codec's errors name where the frame went wrong, as contract 2 wants.
//!
//! - integers, big- and little-endian: [`be_u8`], [`be_u16`], ..., [`le_u16`], ...,
//!   [`be_uint`] (1, 2, 4 or 8 bytes by a size known at run time);
//! - [`take`]: a field of a length known at run time; [`counted`]: one behind its
//!   one-byte length; [`length_checked`]: a declared
//!   length read and checked against a limit before anything of the body is read;
//! - [`bcd`]: binary-coded decimal identifiers (IMEIs, terminal phone numbers);
//! - [`checksummed`]: a body followed by its checksum field, checked;
//! - [`crc8`]: the CRC-8 two protocols share;
//! - [`coordinates`]: coordinates in the encodings trackers use.

use nom::error::{ErrorKind, ParseError};
use nom::{Err, IResult, Parser};

/// A parser's failure: where (the input it could not read) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error<'a> {
    /// The input left when the parser failed; its length against the frame's gives the
    /// offset of the failing field ([`offset`]).
    pub rest: &'a [u8],
    /// Why.
    pub reason: Reason,
}

/// Why a parser failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A field of this many bytes runs past the end of the frame.
    Short {
        /// The field's size.
        wanted: usize,
    },
    /// A value the protocol does not allow, with the value.
    Invalid(String),
    /// A checksum field that does not match its data (each protocol words it its way).
    Checksum {
        /// What the frame says.
        sent: u64,
        /// What the data gives.
        computed: u64,
    },
    /// A nom combinator failed (a tag that did not match, a count out of range).
    Nom(ErrorKind),
}

impl Reason {
    /// The reason in words, for a refusal: `whole` names what a short field ran past
    /// (`"packet"`, `"body"`).
    pub fn words(self, whole: &str) -> String {
        match self {
            Reason::Short { wanted } => format!("a {wanted}-byte field runs past the end of the {whole}"),
            Reason::Invalid(why) => why,
            reason => format!("{reason:?}"),
        }
    }
}

impl<'a> ParseError<&'a [u8]> for Error<'a> {
    fn from_error_kind(rest: &'a [u8], kind: ErrorKind) -> Self {
        Error { rest, reason: Reason::Nom(kind) }
    }

    fn append(_: &'a [u8], _: ErrorKind, other: Self) -> Self {
        // The innermost failure says the most.
        other
    }
}

/// What the kit's parsers return.
pub type Parsed<'a, T> = IResult<&'a [u8], T, Error<'a>>;

/// A failure at `rest`, for `reason`.
pub fn fail<'a, T>(rest: &'a [u8], reason: Reason) -> Parsed<'a, T> {
    Err(Err::Error(Error { rest, reason }))
}

/// A value the protocol does not allow, found at `rest`.
pub fn invalid<'a, T>(rest: &'a [u8], why: String) -> Parsed<'a, T> {
    fail(rest, Reason::Invalid(why))
}

/// The offset in `frame` of `rest`, a tail of it (where a parser stopped or failed).
pub fn offset(frame: &[u8], rest: &[u8]) -> usize {
    frame.len().saturating_sub(rest.len())
}

/// Where `part`, a slice of `frame` (a field parsed out of it), starts in it.
pub fn position_of(frame: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).saturating_sub(frame.as_ptr() as usize).min(frame.len())
}

/// The failure of a parse, unwrapped (the kit's parsers never ask for more input).
pub fn failure(error: Err<Error<'_>>) -> Error<'_> {
    match error {
        Err::Error(error) | Err::Failure(error) => error,
        // Complete input never is incomplete; should a parser say so, it is short.
        Err::Incomplete(_) => Error { rest: &[], reason: Reason::Short { wanted: 0 } },
    }
}

/// `N` bytes.
#[inline(always)]
pub fn array<const N: usize>(input: &[u8]) -> Parsed<'_, [u8; N]> {
    match input.split_first_chunk::<N>() {
        Some((bytes, rest)) => Ok((rest, *bytes)),
        None => fail(input, Reason::Short { wanted: N }),
    }
}

/// `n` bytes, `n` known at run time.
#[inline]
pub fn take(n: usize) -> impl Fn(&[u8]) -> Parsed<'_, &[u8]> {
    move |input: &[u8]| match input.split_at_checked(n) {
        Some((bytes, rest)) => Ok((rest, bytes)),
        None => fail(input, Reason::Short { wanted: n }),
    }
}

macro_rules! integers {
    ($($(#[$doc:meta])* $name:ident: $ty:ty = $from:ident;)*) => {
        $(
            $(#[$doc])*
            #[inline(always)]
            pub fn $name(input: &[u8]) -> Parsed<'_, $ty> {
                array(input).map(|(rest, bytes)| (rest, <$ty>::$from(bytes)))
            }
        )*
    };
}

integers! {
    /// One byte.
    be_u8: u8 = from_be_bytes;
    /// Two bytes, big-endian.
    be_u16: u16 = from_be_bytes;
    /// Four bytes, big-endian.
    be_u32: u32 = from_be_bytes;
    /// Eight bytes, big-endian.
    be_u64: u64 = from_be_bytes;
    /// Two bytes, big-endian, signed.
    be_i16: i16 = from_be_bytes;
    /// Four bytes, big-endian, signed.
    be_i32: i32 = from_be_bytes;
    /// Two bytes, little-endian.
    le_u16: u16 = from_le_bytes;
    /// Four bytes, little-endian.
    le_u32: u32 = from_le_bytes;
    /// Eight bytes, little-endian.
    le_u64: u64 = from_le_bytes;
    /// Two bytes, little-endian, signed.
    le_i16: i16 = from_le_bytes;
    /// Four bytes, little-endian, signed.
    le_i32: i32 = from_le_bytes;
}

/// A field preceded by its one-byte length.
pub fn counted(input: &[u8]) -> Parsed<'_, &[u8]> {
    let (rest, n) = be_u8(input)?;
    take(usize::from(n))(rest)
}

/// An unsigned big-endian integer of `size` bytes: 1, 2, 4, else 8.
#[inline(always)]
pub fn be_uint(size: usize) -> impl Fn(&[u8]) -> Parsed<'_, u64> {
    move |input: &[u8]| match size {
        1 => be_u8(input).map(|(rest, v)| (rest, u64::from(v))),
        2 => be_u16(input).map(|(rest, v)| (rest, u64::from(v))),
        4 => be_u32(input).map(|(rest, v)| (rest, u64::from(v))),
        _ => be_u64(input),
    }
}

/// A declared length read by `length` and checked against `limit` before anything of
/// the body is read: the way every protocol must bound what it buffers.
pub fn length_checked<'a, P>(
    mut length: P,
    limit: usize,
    what: &'static str,
) -> impl FnMut(&'a [u8]) -> Parsed<'a, usize>
where
    P: Parser<&'a [u8], Error = Error<'a>>,
    P::Output: Into<u64>,
{
    move |input: &'a [u8]| {
        let (rest, declared) = length.parse_complete(input)?;
        let declared: u64 = declared.into();
        match usize::try_from(declared) {
            Ok(n) if n <= limit => Ok((rest, n)),
            _ => invalid(input, format!("declared {what} {declared} exceeds the limit {limit}")),
        }
    }
}

/// `n` bytes of binary-coded decimal, two digits a byte, as the decimal digits; a
/// nibble over 9 is refused.
pub fn bcd(n: usize) -> impl Fn(&[u8]) -> Parsed<'_, String> {
    move |input: &[u8]| {
        let (rest, bytes) = take(n)(input)?;
        let mut digits = String::with_capacity(2 * n);
        for (i, byte) in bytes.iter().enumerate() {
            for nibble in [byte >> 4, byte & 0x0F] {
                if nibble > 9 {
                    return invalid(&input[i..], format!("BCD byte 0x{byte:02X} holds a nibble over 9"));
                }
                digits.push(char::from(b'0' + nibble));
            }
        }
        Ok((rest, digits))
    }
}

/// A body of `len` bytes followed by a checksum field read by `field`; the body when
/// `checksum(body)` equals the field, else [`Reason::Checksum`] with both values.
pub fn checksummed<'a, P, C>(len: usize, mut field: P, checksum: C) -> impl FnMut(&'a [u8]) -> Parsed<'a, &'a [u8]>
where
    P: Parser<&'a [u8], Error = Error<'a>>,
    P::Output: Into<u64>,
    C: Fn(&[u8]) -> u64,
{
    move |input: &'a [u8]| {
        let (after_body, body) = take(len)(input)?;
        let (rest, sent) = field.parse_complete(after_body)?;
        let (sent, computed) = (sent.into(), checksum(body));
        if sent != computed {
            return fail(after_body, Reason::Checksum { sent, computed });
        }
        Ok((rest, body))
    }
}

/// CRC-8 with polynomial 0x31 and initial value 0xFF, not reflected (Navtelecom FLEX
/// messages, EGTS headers).
pub fn crc8(data: &[u8]) -> u8 {
    const CRC: crc::Crc<u8> = crc::Crc::<u8>::new(&crc::CRC_8_NRSC_5);
    CRC.checksum(data)
}

/// Coordinates in the encodings trackers use.
pub mod coordinates {
    /// Degrees times 10^7 as a signed integer (Teltonika).
    pub fn from_1e7(value: i32) -> f64 {
        f64::from(value) / 1e7
    }

    /// Degrees times 10^6 as an unsigned integer, the hemisphere apart (JT/T 808).
    pub fn from_1e6(value: u32, negative: bool) -> f64 {
        let degrees = f64::from(value) / 1e6;
        if negative { -degrees } else { degrees }
    }

    /// Minutes times 30,000 (half-milliseconds of arc), the hemisphere apart (GT06).
    pub fn from_half_ms(value: u32, negative: bool) -> f64 {
        let degrees = f64::from(value) / 1_800_000.0;
        if negative { -degrees } else { degrees }
    }
}

/// Text fields of text protocols (Wialon IPS and the like), as nom parsers over `&str`
/// with nom's own error: a text field's failure is reported by the field's name and
/// value, not an offset.
pub mod text {
    use nom::bytes::complete::{tag, take_while};
    use nom::{IResult, Parser};

    /// What a text parser returns.
    pub type Parsed<'a, T> = IResult<&'a str, T>;

    /// Exactly `n` ASCII digits, as their value.
    pub fn digits(n: usize) -> impl Fn(&str) -> Parsed<'_, u32> {
        // A primitive of its own rather than `take_while_m_n(..).map(..)`: Wialon IPS
        // reads six of them per record (BENCHMARKS.md, "Codecs on nom 8").
        move |input: &str| match input.as_bytes().get(..n) {
            Some(run) if run.iter().all(u8::is_ascii_digit) => {
                Ok((&input[n..], run.iter().fold(0u32, |v, b| v * 10 + u32::from(b - b'0'))))
            }
            _ => Err(nom::Err::Error(nom::error::Error::new(input, nom::error::ErrorKind::Digit))),
        }
    }

    /// One or more ASCII digits, as text.
    pub fn digit_run(input: &str) -> Parsed<'_, &str> {
        take_while(|c: char| c.is_ascii_digit()).parse(input).and_then(|(rest, run)| match run.is_empty() {
            true => Err(nom::Err::Error(nom::error::Error::new(input, nom::error::ErrorKind::Digit))),
            false => Ok((rest, run)),
        })
    }

    /// `WHOLE[.FRACTION]` of ASCII digits (the fraction may be empty): the whole part and
    /// the fraction's digits, the whole input consumed.
    pub fn decimal(input: &str) -> Parsed<'_, (&str, &str)> {
        (digit_run, fraction).parse(input)
    }

    /// An optional `.FRACTION` of ASCII digits (it may be empty), the rest of the input:
    /// the fraction's digits.
    pub fn fraction(input: &str) -> Parsed<'_, &str> {
        match input.strip_prefix('.') {
            None if input.is_empty() => Ok((input, "")),
            Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => Ok((&digits[digits.len()..], digits)),
            _ => Err(nom::Err::Error(nom::error::Error::new(input, nom::error::ErrorKind::Digit))),
        }
    }

    /// `value`'s fields between `separator`s (no field holds one; an empty value is one
    /// empty field).
    ///
    /// Hand-written on purpose: nom's `separated_list1(char(';'), take_till(..))` made
    /// Wialon IPS lines 8% (`#D#`) to 17% (`#B#` of 10 records) slower to decode than
    /// `str::split` (BENCHMARKS.md, "Codecs on nom 8"); splitting on one character has
    /// nothing for a parser to add.
    pub fn fields(value: &str, separator: char) -> Vec<&str> {
        value.split(separator).collect()
    }

    /// `#TYPE#` at the start of a packet: the type.
    pub fn packet_type(input: &str) -> Parsed<'_, &str> {
        (tag("#"), take_while(|c: char| c != '#'), tag("#")).map(|(_, kind, _)| kind).parse(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_short_fields() {
        let frame = [0x01, 0x02, 0x03, 0x04, 0x05];
        let (rest, v) = be_u16(&frame).unwrap_or_default();
        assert_eq!((v, rest.len()), (0x0102, 3));
        assert_eq!(le_u16(&frame).map(|(_, v)| v), Ok(0x0201));
        assert_eq!(be_uint(4)(&frame).map(|(_, v)| v), Ok(0x0102_0304));
        let failed = be_u64(&frame[2..]).map_err(failure).expect_err("short");
        assert_eq!((offset(&frame, failed.rest), failed.reason), (2, Reason::Short { wanted: 8 }));
        assert_eq!(take(2)(&frame).map(|(rest, b)| (rest.len(), b)), Ok((3, &frame[..2])));
    }

    #[test]
    fn lengths_are_checked_before_the_body() {
        let frame = [0x00, 0x10, 0xAA];
        assert_eq!(length_checked(be_u16, 16, "length")(&frame).map(|(_, n)| n), Ok(16));
        let refused = length_checked(be_u16, 15, "length")(&frame).map_err(failure).expect_err("over");
        assert_eq!(refused.reason, Reason::Invalid("declared length 16 exceeds the limit 15".into()));
    }

    #[test]
    fn bcd_and_checksums() {
        assert_eq!(bcd(3)(&[0x01, 0x39, 0x12]).map(|(_, d)| d), Ok("013912".to_owned()));
        assert!(bcd(1)(&[0x1A]).is_err());
        let sum = |body: &[u8]| u64::from(body.iter().fold(0u8, |s, b| s.wrapping_add(*b)));
        assert_eq!(checksummed(2, be_u8, sum)(&[1, 2, 3, 9]), Ok((&[9][..], &[1, 2][..])));
        let wrong = checksummed(2, be_u8, sum)(&[1, 2, 4]).map_err(failure).expect_err("mismatch");
        assert_eq!(wrong.reason, Reason::Checksum { sent: 4, computed: 3 });
    }

    #[test]
    fn text_fields() {
        assert_eq!(text::digits(2)("27x"), Ok(("x", 27)));
        assert!(text::digits(2)("2x").is_err());
        assert_eq!(text::decimal("5544.6025"), Ok(("", ("5544", "6025"))));
        assert_eq!(text::decimal("03739"), Ok(("", ("03739", ""))));
        assert!(text::decimal("55x4.0").is_err());
        assert_eq!(text::packet_type("#SD#rest"), Ok(("rest", "SD")));
        assert_eq!(text::fields("a;;b", ';'), ["a", "", "b"]);
        assert_eq!(text::fields("", ';'), [""]);
        assert_eq!(coordinates::from_half_ms(40_711_160, false), 40_711_160.0 / 1_800_000.0);
    }
}
