//! The header maps a proxy-wasm filter reads and edits during one callback, and the
//! wire format the ABI uses for a map of pairs.
//!
//! A stream's maps are copies (lower-case names, in order) made when the callback
//! starts; the filter's edits change the copy and are recorded as operations
//! ([`HeaderOp`]) that the filter glue (`http/filter/wasm.rs`) replays into the
//! stream's `SetHeaders`, which every encoder applies. Pseudo-headers (`:path`,
//! `:method`, ...) can be read but not edited here: an edit of one answers
//! `BadArgument`.

/// One edit a filter made to a header map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp {
    /// Replace every value of the name (or add it).
    Set(String, String),
    /// Add a value beside the existing ones.
    Add(String, String),
    /// Drop every value of the name.
    Remove(String),
}

/// A header map as the filter sees it, with the edits made to it.
#[derive(Debug, Default)]
pub struct HeaderMap {
    pub pairs: Vec<(String, String)>,
    pub ops: Vec<HeaderOp>,
}

impl HeaderMap {
    pub fn get(&self, name: &str) -> Option<&str> {
        // Envoy joins several values of a name with a comma.
        let mut found = self.pairs.iter().filter(|(n, _)| n == name);
        let first = found.next()?;
        Some(first.1.as_str())
    }

    /// The values of `name`, joined with `,` as Envoy's header map returns them.
    pub fn joined(&self, name: &str) -> Option<String> {
        let mut out: Option<String> = None;
        for (_, v) in self.pairs.iter().filter(|(n, _)| n == name) {
            match &mut out {
                None => out = Some(v.clone()),
                Some(o) => {
                    o.push(',');
                    o.push_str(v);
                }
            }
        }
        out
    }

    /// Whether the name may be edited (not a pseudo-header, a valid token).
    pub fn editable(name: &str, value: &str) -> bool {
        !name.is_empty()
            && !name.starts_with(':')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            && value
                .bytes()
                .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.pairs.retain(|(n, _)| n != name);
        self.pairs.push((name.to_string(), value.to_string()));
        self.ops
            .push(HeaderOp::Set(name.to_string(), value.to_string()));
    }

    pub fn add(&mut self, name: &str, value: &str) {
        self.pairs.push((name.to_string(), value.to_string()));
        self.ops
            .push(HeaderOp::Add(name.to_string(), value.to_string()));
    }

    pub fn remove(&mut self, name: &str) {
        self.pairs.retain(|(n, _)| n != name);
        self.ops.push(HeaderOp::Remove(name.to_string()));
    }

    /// `proxy_set_header_map_pairs`: the map becomes `pairs` (pseudo-headers kept).
    pub fn replace_all(&mut self, pairs: Vec<(String, String)>) {
        let old: Vec<String> = self
            .pairs
            .iter()
            .filter(|(n, _)| !n.starts_with(':'))
            .map(|(n, _)| n.clone())
            .collect();
        for n in old {
            if !pairs.iter().any(|(p, _)| *p == n) {
                self.remove(&n);
            }
        }
        let mut seen: Vec<&str> = Vec::new();
        for (n, v) in &pairs {
            if n.starts_with(':') {
                continue;
            }
            if seen.contains(&n.as_str()) {
                self.add(n, v);
            } else {
                self.set(n, v);
                seen.push(n);
            }
        }
    }
}

/// Serializes pairs as the ABI's map: the count, each key and value length (u32 LE),
/// then each key and value with a terminating NUL.
pub fn encode_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> Vec<u8> {
    let n = pairs.clone().count();
    let mut out = Vec::with_capacity(4 + n * 8);
    out.extend_from_slice(&(n as u32).to_le_bytes());
    for (k, v) in pairs.clone() {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Parses the ABI's map of pairs; `None` if it is malformed.
pub fn decode_pairs(data: &[u8]) -> Option<Vec<(String, String)>> {
    let word = |at: usize| -> Option<usize> {
        let b = data.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    if data.is_empty() {
        return Some(Vec::new());
    }
    let n = word(0)?;
    if n > data.len() / 8 {
        return None;
    }
    let mut at = 4 + n * 8;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (kl, vl) = (word(4 + i * 8)?, word(8 + i * 8)?);
        let k = data.get(at..at.checked_add(kl)?)?;
        at += kl + 1;
        let v = data.get(at..at.checked_add(vl)?)?;
        at += vl + 1;
        out.push((
            String::from_utf8_lossy(k).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        ));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip_and_edits_are_recorded() {
        let p = [("a", "1"), ("bb", "")];
        let enc = encode_pairs(p.iter().copied());
        assert_eq!(&enc[..4], &2u32.to_le_bytes());
        let dec = decode_pairs(&enc).unwrap();
        assert_eq!(
            dec,
            vec![("a".into(), "1".into()), ("bb".into(), "".into())]
        );
        assert!(decode_pairs(&enc[..enc.len() - 3]).is_none());
        assert!(decode_pairs(&[255, 255, 255, 255]).is_none());

        let mut m = HeaderMap {
            pairs: vec![(":path".into(), "/".into()), ("x".into(), "1".into())],
            ops: vec![],
        };
        m.add("x", "2");
        assert_eq!(m.joined("x").as_deref(), Some("1,2"));
        m.replace_all(vec![("y".into(), "3".into())]);
        assert_eq!(m.get(":path"), Some("/"));
        assert_eq!(m.get("x"), None);
        assert_eq!(m.ops.last(), Some(&HeaderOp::Set("y".into(), "3".into())));
        assert!(!HeaderMap::editable(":path", "/x"));
        assert!(!HeaderMap::editable("a b", "v"));
    }
}
