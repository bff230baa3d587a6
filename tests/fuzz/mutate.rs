//! Byte-level mutations of valid documents, the way a fuzzer makes them: bits flipped,
//! bytes inserted, deleted and duplicated, pieces of another document spliced in, and
//! whole-document changes (a BOM, CRLF line ends, NUL, truncation). Positions are
//! `Index`es, scaled to the document's length when applied, so one mutation list applies
//! to any document and shrinks well.

use proptest::prelude::*;
use proptest::sample::Index;

/// Bytes that mean something to YAML or JSON, or that parsers get wrong.
pub const TOKENS: &[&[u8]] = &[
    b"\0",
    b"\xff\xfe",
    b"\xc3\x28",
    b"\xef\xbb\xbf",
    b"\r\n",
    b"\r",
    b"\t",
    b"\n---\n",
    b"\n...\n",
    b"%YAML 1.2\n---\n",
    b"&a ",
    b"*a",
    b"<<: *a\n",
    b"? ",
    b": ",
    b"- ",
    b"[",
    b"]",
    b"{",
    b"}",
    b"\"",
    b"'",
    b"\\u0000",
    b"\\ud800",
    b"#",
    b"!!binary ",
    b"!!str ",
    b"!<tag:yaml.org,2002:int> ",
    b"|\n",
    b">-\n",
    b"~",
    b"null",
    b"true",
    b"-0",
    b".nan",
    b"-.inf",
    b"1e400",
    b"0x7fffffffffffffffffff",
    b"99999999999999999999999999999999999999",
    b"-9223372036854775809",
    b"18446744073709551616",
    b"2030-02-30T25:61:61Z",
    b"\xe2\x80\xae",
    b"\xf0\x9f\x92\xa9",
];

/// One change to a document.
#[derive(Debug, Clone)]
pub enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Insert(Index, Vec<u8>),
    InsertToken(Index, Index),
    Delete(Index, usize),
    /// Copies a stretch to another place (a line copied is a duplicate key).
    Duplicate(Index, usize, Index),
    /// A stretch of another seed, put here.
    Splice(Index, Index, Index, usize),
    /// `[` or `{"a":` repeated: nesting deeper than any budget.
    Nest(Index, usize, bool),
    Truncate(Index),
    Bom,
    Crlf,
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::SetByte(at, byte)),
        2 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        4 => (any::<Index>(), any::<Index>()).prop_map(|(at, token)| Mutation::InsertToken(at, token)),
        3 => (any::<Index>(), 1usize..40).prop_map(|(at, len)| Mutation::Delete(at, len)),
        3 => (any::<Index>(), 1usize..80, any::<Index>())
            .prop_map(|(from, len, to)| Mutation::Duplicate(from, len, to)),
        2 => (any::<Index>(), any::<Index>(), any::<Index>(), 1usize..400)
            .prop_map(|(at, seed, from, len)| Mutation::Splice(at, seed, from, len)),
        1 => (any::<Index>(), 1usize..300, any::<bool>())
            .prop_map(|(at, depth, flow)| Mutation::Nest(at, depth, flow)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => Just(Mutation::Bom),
        1 => Just(Mutation::Crlf),
    ]
}

/// Up to `most` mutations, applied in order.
pub fn mutations(most: usize) -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..=most)
}

/// A place in `len` bytes, both ends included.
fn place(at: Index, len: usize) -> usize {
    at.index(len + 1)
}

impl Mutation {
    pub fn apply(&self, doc: &mut Vec<u8>, seeds: &[Vec<u8>]) {
        match self {
            Self::FlipBit(at, bit) if !doc.is_empty() => {
                let i = at.index(doc.len());
                doc[i] ^= 1 << bit;
            }
            Self::SetByte(at, byte) if !doc.is_empty() => {
                let i = at.index(doc.len());
                doc[i] = *byte;
            }
            Self::FlipBit(..) | Self::SetByte(..) => {}
            Self::Insert(at, bytes) => {
                let i = place(*at, doc.len());
                doc.splice(i..i, bytes.iter().copied());
            }
            Self::InsertToken(at, token) => {
                let i = place(*at, doc.len());
                let token = TOKENS[token.index(TOKENS.len())];
                doc.splice(i..i, token.iter().copied());
            }
            Self::Delete(at, len) => {
                let i = place(*at, doc.len());
                let end = (i + len).min(doc.len());
                doc.drain(i..end);
            }
            Self::Duplicate(from, len, to) => {
                let i = place(*from, doc.len());
                let piece = doc[i..(i + len).min(doc.len())].to_vec();
                let j = place(*to, doc.len());
                doc.splice(j..j, piece);
            }
            Self::Splice(at, seed, from, len) => {
                if seeds.is_empty() {
                    return;
                }
                let other = &seeds[seed.index(seeds.len())];
                let i = place(*from, other.len());
                let piece = other[i..(i + len).min(other.len())].to_vec();
                let j = place(*at, doc.len());
                doc.splice(j..j, piece);
            }
            Self::Nest(at, depth, flow) => {
                let open: &[u8] = if *flow { b"[" } else { b"{\"a\":" };
                let i = place(*at, doc.len());
                doc.splice(i..i, open.repeat(*depth));
            }
            Self::Truncate(at) => {
                let i = place(*at, doc.len());
                doc.truncate(i);
            }
            Self::Bom => {
                doc.splice(0..0, *b"\xef\xbb\xbf");
            }
            Self::Crlf => {
                let mut out = Vec::with_capacity(doc.len() + doc.len() / 16);
                for &byte in doc.iter() {
                    if byte == b'\n' {
                        out.push(b'\r');
                    }
                    out.push(byte);
                }
                *doc = out;
            }
        }
    }
}

/// `seed` with every mutation applied.
pub fn mutated(seed: &[u8], changes: &[Mutation], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut doc = seed.to_vec();
    for change in changes {
        change.apply(&mut doc, seeds);
    }
    doc
}

/// A seed, then what is done to it.
pub fn case(seed_count: usize, most: usize) -> impl Strategy<Value = (usize, Vec<Mutation>)> {
    (0..seed_count, mutations(most))
}

/// The cases of a property: proptest's default (256) or `PROPTEST_CASES`, as in every
/// property test of the crate.
pub fn config() -> ProptestConfig {
    ProptestConfig {
        // A failing case is shrunk and printed; it is not written beside the tests.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}
