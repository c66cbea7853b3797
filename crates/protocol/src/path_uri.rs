//! `PathUri`: a path on the executor host, carried as a `file:` URI.
//!
//! Current upstream peers send and expect `file:///…` URIs; older ones sent native absolute
//! paths. rexec accepts both on input and always emits URIs.

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::path::{Path, PathBuf};
use url::Url;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathUri(PathBuf);

impl PathUri {
    /// Wrap an absolute native path.
    pub fn from_path(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    /// Parse a `file:` URI or a native absolute path.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with('/') {
            return Ok(Self(PathBuf::from(text)));
        }
        let url = Url::parse(text).map_err(|e| format!("invalid URI: {e}"))?;
        if url.scheme() != "file" {
            return Err(format!(
                "unsupported URI `{text}`: expected a file: URI or an absolute path"
            ));
        }
        url.to_file_path()
            .map(Self)
            .map_err(|()| format!("URI `{text}` is not a valid path on this exec-server host"))
    }

    pub fn as_path(&self) -> &Path {
        &self.0
    }

    pub fn into_path(self) -> PathBuf {
        self.0
    }

    /// The `file:` URI text.
    pub fn to_uri(&self) -> String {
        match Url::from_file_path(&self.0) {
            Ok(url) => url.into(),
            Err(()) => format!("file://{}", self.0.display()),
        }
    }
}

impl fmt::Display for PathUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uri())
    }
}

impl Serialize for PathUri {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_uri())
    }
}

impl<'de> Deserialize<'de> for PathUri {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PathUriVisitor;
        impl Visitor<'_> for PathUriVisitor {
            type Value = PathUri;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a file: URI or an absolute path")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PathUri, E> {
                PathUri::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(PathUriVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_uris_and_native_absolute_paths() {
        assert_eq!(
            PathUri::parse("file:///tmp/work").expect("uri").as_path(),
            Path::new("/tmp/work")
        );
        assert_eq!(
            PathUri::parse("file:///tmp/a%20b")
                .expect("escaped")
                .as_path(),
            Path::new("/tmp/a b")
        );
        assert_eq!(
            PathUri::parse("/tmp").expect("native").as_path(),
            Path::new("/tmp")
        );
    }

    #[test]
    fn rejects_relative_and_foreign_schemes() {
        assert_eq!(
            PathUri::parse("tmp").expect_err("relative"),
            "invalid URI: relative URL without a base"
        );
        assert!(PathUri::parse("http://x/y").is_err());
    }

    #[test]
    fn emits_escaped_uris() {
        assert_eq!(PathUri::from_path("/tmp/a b").to_uri(), "file:///tmp/a%20b");
    }
}
