//! Field paths and where they are in the YAML text.
//!
//! yaml_serde keeps no positions in its values, but it does stamp every error raised while a
//! node is deserialized with the position of that node. [`locate`] uses exactly that: it walks
//! the document along a path with a serde seed and, at the target, fails on purpose with a marker
//! message; the position yaml_serde attaches to that error is the position of the node. The real
//! parser does the work, so flow style (`{ a: 1 }`), block style, quoting, comments and anchors
//! all locate correctly, with no second hand-written scanner to drift from it. It runs only when
//! an error is reported, so re-parsing per lookup costs nothing in the normal case.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One step of a field path: a mapping key or a sequence index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path to a field, shown as `process.sanity.every` or `files[1].template`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Seg>);

impl FieldPath {
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }

    pub fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_owned()));
        FieldPath(segs)
    }

    pub fn index(&self, index: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        FieldPath(segs)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

const MARKER: &str = "\u{0}ochopod-locate-marker";

/// The 1-based (line, column) where the node at `path` starts, or where its closest existing
/// ancestor starts when the path is absent (a missing field is reported at its parent), or
/// (1, 1) when nothing can be found (the text does not parse).
pub fn locate(text: &str, path: &FieldPath) -> (usize, usize) {
    if is_blank(text) {
        // The parser would point past the last line, at the end of the stream.
        return (1, 1);
    }
    for len in (0..=path.0.len()).rev() {
        if let Some(found) = locate_exact(text, &path.0[..len]) {
            return found;
        }
    }
    (1, 1)
}

/// Only comments and document markers: a declaration with nothing declared.
pub(crate) fn is_blank(text: &str) -> bool {
    text.lines().map(str::trim).all(|l| l.is_empty() || l.starts_with('#') || l == "---")
}

fn locate_exact(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
    let de = serde_yaml::Deserializer::from_str(text);
    match (Seek { path }).deserialize(de) {
        Err(e) if e.to_string().contains(MARKER) => e.location().map(|l| (l.line(), l.column())),
        _ => None,
    }
}

/// Walks down `path`; `Ok(())` means the path is not in the document.
struct Seek<'p> {
    path: &'p [Seg],
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else { return Err(de::Error::custom(MARKER)) };
        let Seg::Key(wanted) = first else { return Ok(()) };
        while let Some(key) = map.next_key::<KeyText>()? {
            if key.0.as_deref() == Some(wanted.as_str()) {
                return map.next_value_seed(Seek { path: rest });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else { return Err(de::Error::custom(MARKER)) };
        let Seg::Index(wanted) = first else { return Ok(()) };
        for _ in 0..*wanted {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Seek { path: rest })?;
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
}

impl Seek<'_> {
    /// A scalar is the target when the path ends here; it has no children to descend into.
    fn scalar<E: de::Error>(self) -> Result<(), E> {
        if self.path.is_empty() {
            Err(E::custom(MARKER))
        } else {
            Ok(())
        }
    }
}

/// A mapping key as text when it is a scalar (`None` for complex keys, which we never look for).
struct KeyText(Option<String>);

impl<'de> de::Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(Some(v.to_owned())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(Some(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(Some(v.to_string())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(Some(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyText, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(KeyText(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeyText, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(KeyText(None))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> FieldPath {
        let mut p = FieldPath::root();
        for part in s.split('.') {
            match part.split_once('[') {
                Some((k, n)) => p = p.key(k).index(n.trim_end_matches(']').parse().unwrap()),
                None => p = p.key(part),
            }
        }
        p
    }

    const DOC: &str = "\
# a comment
cluster: zk
process:
  command: run
  sanity: { command: check, every: 30s }
files:
  - path: a
    template: |
      x
  - { path: b, template: 'y' }
";

    #[test]
    fn locates_block_flow_and_sequence_nodes() {
        assert_eq!(locate(DOC, &path("cluster")), (2, 10));
        assert_eq!(locate(DOC, &path("process.command")), (4, 12));
        assert_eq!(locate(DOC, &path("process.sanity.every")), (5, 36));
        assert_eq!(locate(DOC, &path("files[0].template")), (8, 15));
        assert_eq!(locate(DOC, &path("files[1].template")), (10, 26));
    }

    #[test]
    fn missing_fields_fall_back_to_the_parent() {
        assert_eq!(locate(DOC, &path("process.sanity.timeout")), locate(DOC, &path("process.sanity")));
        assert_eq!(locate(DOC, &path("files[7].path")), locate(DOC, &path("files")));
        assert_eq!(locate(DOC, &path("nope")), (2, 1));
    }

    #[test]
    fn unparsable_text_gives_the_start() {
        assert_eq!(locate("a: b: c", &path("zzz")), (1, 1));
        assert_eq!(locate("\t", &path("a")), (1, 1));
    }

    #[test]
    fn paths_display_like_the_yaml() {
        assert_eq!(path("files[1].template").to_string(), "files[1].template");
        assert_eq!(FieldPath::root().to_string(), "");
    }
}
