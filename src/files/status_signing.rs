//! Signed status files: the status directory is the ledger of what the operator gave, and
//! it sits in a repository that pull requests can edit. Each status file carries an
//! HMAC-SHA-256 over its content, the object's kind and key and a per-file sequence
//! number; a signed index holds the newest sequence number of every file, so an older
//! signed file put back from git history is refused. The key lives only where `apply`
//! runs (the secrets directory); see README "Security".

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The first line of a signed status file starts with this.
pub const HEADER_PREFIX: &str = "# expensify-operator signature v1 ";
/// The index file, hidden so nothing takes it for a manifest.
pub const INDEX_FILE: &str = ".signatures";
/// The first line of the index. Version 2 marks the files the operator removed, so a file
/// deleted by anyone else is noticed.
const INDEX_HEADER: &str = "# expensify-operator status index v2: the newest sequence number of every status file, and which were removed. Do not edit.";
/// The first line of a version 1 index, which did not mark removals.
const INDEX_HEADER_V1: &str = "# expensify-operator status index v1: the newest sequence number of every status file. Do not edit.";
/// What follows the sequence number of a file the operator removed.
const REMOVED: &str = "removed";
/// The line of an index or an anchor that holds the index's generation.
const GENERATION: &str = "generation ";
/// The first line of an anchor file.
const ANCHOR_HEADER: &str = "# expensify-operator status anchor v1: the generation of the status index last written. Keep it outside the repository. Do not edit.";
const ANCHOR_DOMAIN: &[u8] = b"expensify-operator status anchor v1\n";
/// What a MAC is computed over starts with this, so a status file's MAC can never verify
/// as an index's and the other way round.
const FILE_DOMAIN: &[u8] = b"expensify-operator status file v1\n";
const INDEX_DOMAIN: &[u8] = b"expensify-operator status index v1\n";
/// A key shorter than this is refused: HMAC-SHA-256 wants a key as long as its output.
pub const MIN_KEY_BYTES: usize = 32;

/// The key that signs status files. Never printed: `Debug` says only that it is there.
#[derive(Clone)]
pub struct StatusKey(HmacSha256);

impl fmt::Debug for StatusKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StatusKey(<redacted>)")
    }
}

/// Why a key was refused. Never carries the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusKeyError {
    #[error(
        "the status signing key has {found} byte(s); at least {MIN_KEY_BYTES} are needed (e.g. `openssl rand -base64 48`)"
    )]
    TooShort { found: usize },
    #[error("the status signing key is refused by HMAC-SHA-256")]
    Refused,
}

impl StatusKey {
    /// A key from the bytes of its file; surrounding whitespace (a trailing newline) is
    /// not part of it.
    pub fn new(bytes: &[u8]) -> Result<Self, StatusKeyError> {
        let key = bytes.trim_ascii();
        if key.len() < MIN_KEY_BYTES {
            return Err(StatusKeyError::TooShort { found: key.len() });
        }
        <HmacSha256 as Mac>::new_from_slice(key)
            .map(Self)
            .map_err(|_| StatusKeyError::Refused)
    }

    /// A fresh MAC keyed with this key.
    fn mac(&self) -> HmacSha256 {
        self.0.clone()
    }

    /// The MAC of one status file's body, bound to the file's place and sequence number.
    fn file_mac(&self, place: &str, sequence: u64, body: &[u8]) -> HmacSha256 {
        let mut mac = self.mac();
        mac.update(FILE_DOMAIN);
        mac.update(place.as_bytes());
        mac.update(b"\n");
        mac.update(sequence.to_string().as_bytes());
        mac.update(b"\n");
        mac.update(body);
        mac
    }

    /// The first line of the signed file whose body is `body`, at `place`
    /// (`kind/namespace/name`).
    pub fn header(&self, place: &str, sequence: u64, body: &[u8]) -> String {
        let tag = self.file_mac(place, sequence, body).finalize().into_bytes();
        format!("{HEADER_PREFIX}seq={sequence} mac={}\n", hex(&tag))
    }

    /// Whether `mac` (hex) signs `body` at `place` with `sequence`; constant-time.
    fn verifies(&self, place: &str, sequence: u64, body: &[u8], mac: &str) -> bool {
        let Some(tag) = unhex(mac) else {
            return false;
        };
        self.file_mac(place, sequence, body)
            .verify_slice(&tag)
            .is_ok()
    }
}

/// A status file split into its signature and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed<'a> {
    pub sequence: u64,
    pub mac: &'a str,
    pub body: &'a str,
}

/// Splits off the signature line; `None` when the file has none (unsigned). A header that
/// is there but malformed is returned with sequence 0 and an empty MAC, so it fails
/// verification rather than passing as unsigned.
pub fn split(text: &str) -> Option<Signed<'_>> {
    let rest = text.strip_prefix(HEADER_PREFIX)?;
    let (line, body) = rest.split_once('\n').unwrap_or((rest, ""));
    let mut sequence = None;
    let mut mac = None;
    for field in line.split(' ') {
        if let Some(value) = field.strip_prefix("seq=") {
            sequence = value.parse::<u64>().ok();
        } else if let Some(value) = field.strip_prefix("mac=") {
            mac = Some(value);
        }
    }
    Some(match (sequence, mac) {
        (Some(sequence), Some(mac)) => Signed {
            sequence,
            mac,
            body,
        },
        _ => Signed {
            sequence: 0,
            mac: "",
            body,
        },
    })
}

/// Why a status file is not taken as the ledger.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unverified {
    #[error("its signature does not verify: it was edited, or signed with another key")]
    Forged,
    #[error(
        "it is older than the status last written for this object (sequence {found} < {newest}): put back from history?"
    )]
    Replayed { found: u64, newest: u64 },
    #[error(
        "it is not signed (written by a version before signing, or its signature was removed); if this directory was written by an older version, run `apply --adopt-unsigned-status` once"
    )]
    Unsigned,
    #[error(
        "the signature index {INDEX_FILE} says the operator wrote this file (sequence {0}) and never removed it, and it is gone: it was deleted by hand or by a checkout, which would make the operator forget what it gave"
    )]
    Missing(u64),
    #[error(
        "the signature index {INDEX_FILE} {0}, so a status file put back from history cannot be told apart; restore the index from git history, or run `apply --adopt-unsigned-status` to take the directory as it is"
    )]
    Index(String),
}

/// Checks one status file's text against the key and the newest sequence number the index
/// knows for it; returns its body and sequence number.
pub fn verify<'a>(
    key: &StatusKey,
    place: &str,
    text: &'a str,
    newest: u64,
) -> Result<(&'a str, u64), Unverified> {
    let signed = split(text).ok_or(Unverified::Unsigned)?;
    if !key.verifies(place, signed.sequence, signed.body.as_bytes(), signed.mac) {
        return Err(Unverified::Forged);
    }
    if signed.sequence < newest {
        return Err(Unverified::Replayed {
            found: signed.sequence,
            newest,
        });
    }
    Ok((signed.body, signed.sequence))
}

/// The newest sequence number of every status file (`kind/namespace/name`). Entries stay
/// after a file is removed, so a removed object's old file cannot come back; the removals
/// the operator made are marked, so a file that is gone without one is noticed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    pub newest: BTreeMap<String, u64>,
    /// Places whose file the operator removed (its object gone, or `state forget`).
    pub removed: BTreeSet<String>,
    /// Read from a version 1 index, which did not mark removals: whether a file is
    /// expected is unknown until the index is written again (see
    /// [`Index::settle_legacy`]).
    pub legacy: bool,
    /// How many times the index was written: one more every write. An anchor kept
    /// outside the repository remembers the last one, so a directory rolled back to an
    /// older commit (files and index together) is noticed (see [`Anchor`]).
    pub generation: u64,
}

/// Why an index could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadIndexError {
    #[error("is not an index this version wrote (line {0})")]
    Malformed(usize),
    #[error("does not verify: it was edited, or signed with another key")]
    Forged,
}

impl Index {
    pub fn get(&self, place: &str) -> u64 {
        self.newest.get(place).copied().unwrap_or(0)
    }

    /// Records that `place` was written at `sequence` (never lowers it): a file is there.
    pub fn raise(&mut self, place: &str, sequence: u64) {
        let entry = self.newest.entry(place.to_string()).or_insert(0);
        *entry = (*entry).max(sequence);
        self.removed.remove(place);
    }

    /// Records that the operator removed the file at `place`, at `sequence`.
    pub fn mark_removed(&mut self, place: &str, sequence: u64) {
        self.raise(place, sequence);
        self.removed.insert(place.to_string());
    }

    /// The sequence number of the file the operator last wrote at `place` and did not
    /// remove, if the index knows of one: that file should be there.
    pub fn expected(&self, place: &str) -> Option<u64> {
        if self.legacy || self.removed.contains(place) {
            return None;
        }
        self.newest.get(place).copied()
    }

    /// Every place whose file should be there (see [`Index::expected`]).
    pub fn expected_places(&self) -> impl Iterator<Item = (&str, u64)> {
        self.newest
            .iter()
            .filter(|(place, _)| !self.legacy && !self.removed.contains(*place))
            .map(|(place, sequence)| (place.as_str(), *sequence))
    }

    /// A version 1 index, about to be written as version 2: the places without a file
    /// now are taken as removed by the operator (version 1 cannot tell; it is what that
    /// version meant), so only later deletions are noticed.
    pub fn settle_legacy(&mut self, present: &BTreeSet<String>) {
        if !self.legacy {
            return;
        }
        let gone: Vec<String> = self
            .newest
            .keys()
            .filter(|place| !present.contains(*place))
            .cloned()
            .collect();
        self.removed.extend(gone);
        self.legacy = false;
    }

    fn body(&self) -> String {
        let mut body = format!("{INDEX_HEADER}\n{GENERATION}{}\n", self.generation);
        for (place, sequence) in &self.newest {
            if self.removed.contains(place) {
                body.push_str(&format!("{place} {sequence} {REMOVED}\n"));
            } else {
                body.push_str(&format!("{place} {sequence}\n"));
            }
        }
        body
    }

    /// The index as written: its entries, then a line with their MAC.
    pub fn to_text(&self, key: &StatusKey) -> String {
        seal(key, INDEX_DOMAIN, &self.body())
    }

    /// Reads and verifies an index written by [`Index::to_text`].
    pub fn parse(key: &StatusKey, text: &str) -> Result<Self, ReadIndexError> {
        let body = unseal(key, INDEX_DOMAIN, text)?;
        let mut index = Self::default();
        let mut lines = body.lines();
        let first_entry = match lines.next() {
            Some(INDEX_HEADER) => {
                index.generation = lines
                    .next()
                    .and_then(|line| line.strip_prefix(GENERATION)?.trim().parse().ok())
                    .ok_or(ReadIndexError::Malformed(2))?;
                3
            }
            Some(INDEX_HEADER_V1) => {
                index.legacy = true;
                2
            }
            _ => return Err(ReadIndexError::Malformed(1)),
        };
        for (number, line) in lines.enumerate() {
            let malformed = ReadIndexError::Malformed(number + first_entry);
            let mut fields = line.split(' ');
            let (Some(place), Some(sequence)) = (fields.next(), fields.next()) else {
                return Err(malformed);
            };
            let sequence = sequence.parse::<u64>().map_err(|_| malformed.clone())?;
            match (fields.next(), fields.next()) {
                (None, _) => index.raise(place, sequence),
                (Some(REMOVED), None) if !index.legacy => index.mark_removed(place, sequence),
                _ => return Err(malformed),
            }
        }
        Ok(index)
    }
}

/// Where the status directory's last index write is remembered outside the repository:
/// the index's generation, MAC'd with the status key. An index older than its anchor was
/// put back with the files it vouches for (a rollback of the whole directory to an older
/// commit), which signatures alone cannot tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Anchor {
    pub generation: u64,
}

impl Anchor {
    pub fn to_text(self, key: &StatusKey) -> String {
        seal(
            key,
            ANCHOR_DOMAIN,
            &format!("{ANCHOR_HEADER}\n{GENERATION}{}\n", self.generation),
        )
    }

    pub fn parse(key: &StatusKey, text: &str) -> Result<Self, ReadIndexError> {
        let body = unseal(key, ANCHOR_DOMAIN, text)?;
        let mut lines = body.lines();
        if lines.next() != Some(ANCHOR_HEADER) {
            return Err(ReadIndexError::Malformed(1));
        }
        let generation = lines
            .next()
            .and_then(|line| line.strip_prefix(GENERATION)?.trim().parse().ok())
            .ok_or(ReadIndexError::Malformed(2))?;
        if lines.next().is_some() {
            return Err(ReadIndexError::Malformed(3));
        }
        Ok(Self { generation })
    }
}

/// `body`, then a line with its MAC under `domain`.
fn seal(key: &StatusKey, domain: &[u8], body: &str) -> String {
    let mut mac = key.mac();
    mac.update(domain);
    mac.update(body.as_bytes());
    format!("{body}mac {}\n", hex(&mac.finalize().into_bytes()))
}

/// The body of a text written by [`seal`] under `domain`, if its MAC verifies.
fn unseal(key: &StatusKey, domain: &[u8], text: &str) -> Result<String, ReadIndexError> {
    let Some((body, last)) = text.trim_end_matches('\n').rsplit_once('\n') else {
        return Err(ReadIndexError::Malformed(1));
    };
    let body = format!("{body}\n");
    let tag = last
        .strip_prefix("mac ")
        .and_then(unhex)
        .ok_or(ReadIndexError::Malformed(body.lines().count() + 1))?;
    let mut mac = key.mac();
    mac.update(domain);
    mac.update(body.as_bytes());
    mac.verify_slice(&tag).map_err(|_| ReadIndexError::Forged)?;
    Ok(body)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> StatusKey {
        StatusKey::new(b"0123456789abcdef0123456789abcdef\n").unwrap()
    }

    const PLACE: &str = "policyaccess/finance/team";
    const BODY: &str = "# Written by expensify-operator\nkind: PolicyAccess\n";

    fn signed(sequence: u64, body: &str) -> String {
        format!("{}{body}", key().header(PLACE, sequence, body.as_bytes()))
    }

    #[test]
    fn a_signed_file_verifies_and_gives_back_its_body() {
        let text = signed(3, BODY);
        assert_eq!(verify(&key(), PLACE, &text, 3), Ok((BODY, 3)));
        assert_eq!(verify(&key(), PLACE, &text, 0), Ok((BODY, 3)));
    }

    #[test]
    fn an_edit_another_place_another_key_or_a_forged_sequence_fails() {
        let text = signed(3, BODY);
        let edited = text.replace("PolicyAccess", "PolicyAccesz");
        assert_eq!(verify(&key(), PLACE, &edited, 0), Err(Unverified::Forged));
        assert_eq!(
            verify(&key(), "policyaccess/finance/other", &text, 0),
            Err(Unverified::Forged)
        );
        let other = StatusKey::new(&[7u8; 40]).unwrap();
        assert_eq!(verify(&other, PLACE, &text, 0), Err(Unverified::Forged));
        let bumped = text.replacen("seq=3", "seq=9", 1);
        assert_eq!(verify(&key(), PLACE, &bumped, 0), Err(Unverified::Forged));
        let mangled = text.replacen("mac=", "mac=zz", 1);
        assert_eq!(verify(&key(), PLACE, &mangled, 0), Err(Unverified::Forged));
    }

    #[test]
    fn an_older_file_is_refused_as_replayed_and_an_unsigned_one_as_unsigned() {
        let text = signed(2, BODY);
        assert_eq!(
            verify(&key(), PLACE, &text, 5),
            Err(Unverified::Replayed {
                found: 2,
                newest: 5
            })
        );
        assert_eq!(verify(&key(), PLACE, BODY, 0), Err(Unverified::Unsigned));
        let broken = format!("{HEADER_PREFIX}garbage\n{BODY}");
        assert_eq!(verify(&key(), PLACE, &broken, 0), Err(Unverified::Forged));
    }

    #[test]
    fn the_index_round_trips_and_refuses_edits() {
        let mut index = Index::default();
        index.raise(PLACE, 4);
        index.raise(PLACE, 2);
        index.raise("expensifyconnector/finance/acme", 1);
        assert_eq!(index.get(PLACE), 4, "never lowered");
        let text = index.to_text(&key());
        assert_eq!(Index::parse(&key(), &text), Ok(index));
        let lowered = text.replace(&format!("{PLACE} 4"), &format!("{PLACE} 1"));
        assert_eq!(Index::parse(&key(), &lowered), Err(ReadIndexError::Forged));
        assert!(Index::parse(&key(), "").is_err());
        assert!(Index::parse(&key(), "x\nmac 00\n").is_err());
    }

    #[test]
    fn the_index_marks_removals_and_expects_every_other_file() {
        let mut index = Index::default();
        index.raise(PLACE, 4);
        index.mark_removed("policyaccess/finance/gone", 2);
        assert_eq!(index.expected(PLACE), Some(4));
        assert_eq!(index.expected("policyaccess/finance/gone"), None);
        assert_eq!(index.expected("policyaccess/finance/never"), None);
        let text = index.to_text(&key());
        assert!(
            text.contains("policyaccess/finance/gone 2 removed\n"),
            "{text}"
        );
        let read = Index::parse(&key(), &text).unwrap();
        assert_eq!(read, index);
        let places: Vec<_> = read.expected_places().collect();
        assert_eq!(places, [(PLACE, 4)]);
        // Written again after a removal, the file is expected again.
        let mut again = read;
        again.raise("policyaccess/finance/gone", 3);
        assert_eq!(again.expected("policyaccess/finance/gone"), Some(3));
    }

    #[test]
    fn a_version_1_index_expects_nothing_until_it_is_settled() {
        let body = format!("{INDEX_HEADER_V1}\n{PLACE} 4\npolicyaccess/finance/gone 2\n");
        let mut index = Index::parse(&key(), &seal(&key(), INDEX_DOMAIN, &body)).unwrap();
        assert!(index.legacy);
        assert_eq!(index.expected(PLACE), None, "v1 did not mark removals");
        index.settle_legacy(&BTreeSet::from([PLACE.to_string()]));
        assert_eq!(index.expected(PLACE), Some(4));
        assert_eq!(index.expected("policyaccess/finance/gone"), None);
        assert!(index.to_text(&key()).starts_with(INDEX_HEADER));
        // A v1 index never carries removal marks; an unknown header is refused.
        let marked = format!("{INDEX_HEADER_V1}\n{PLACE} 4 removed\n");
        assert!(Index::parse(&key(), &seal(&key(), INDEX_DOMAIN, &marked)).is_err());
        let odd = format!("# another header\n{PLACE} 4\n");
        assert_eq!(
            Index::parse(&key(), &seal(&key(), INDEX_DOMAIN, &odd)),
            Err(ReadIndexError::Malformed(1))
        );
    }

    #[test]
    fn the_anchor_round_trips_and_is_never_taken_for_an_index() {
        let anchor = Anchor { generation: 7 };
        let text = anchor.to_text(&key());
        assert_eq!(Anchor::parse(&key(), &text), Ok(anchor));
        let lowered = text.replace("generation 7", "generation 1");
        assert_eq!(Anchor::parse(&key(), &lowered), Err(ReadIndexError::Forged));
        let other = StatusKey::new(&[7u8; 40]).unwrap();
        assert_eq!(Anchor::parse(&other, &text), Err(ReadIndexError::Forged));
        assert_eq!(Index::parse(&key(), &text), Err(ReadIndexError::Forged));
        let index = Index {
            generation: 3,
            ..Index::default()
        };
        let written = index.to_text(&key());
        assert!(written.contains("\ngeneration 3\n"), "{written}");
        assert_eq!(Index::parse(&key(), &written), Ok(index));
        assert_eq!(Anchor::parse(&key(), &written), Err(ReadIndexError::Forged));
    }

    #[test]
    fn short_keys_are_refused_and_keys_never_print() {
        assert_eq!(
            StatusKey::new(b"  short \n").unwrap_err(),
            StatusKeyError::TooShort { found: 5 }
        );
        assert_eq!(format!("{:?}", key()), "StatusKey(<redacted>)");
    }
}
