//! A request path's dot segments, resolved once before routing
//! (RFC 3986 §5.2.4), so that the function is chosen from, and the pod is
//! sent, one and the same path.
//!
//! Pure. The rules, and who else applies them (nginx 1.22 measured with the
//! cases in `tests/reliability/tests/request_target.rs`; Envoy from its docs):
//!
//! - `.` and `..` segments are resolved, and so are their percent-encoded
//!   spellings (`%2e`, `%2E`, `.%2e`, ...): RFC 3986 §2.3 makes `%2E` the
//!   same as `.`, and nginx resolves both.
//! - A `..` that would climb above the root is refused (nginx: 400).
//! - A `..` right after an empty segment (`/a//..`) is refused: RFC 3986
//!   pops the empty segment (`/a/`), nginx merges slashes first and pops `a`
//!   (`/`). Two readings of one path is how a front proxy and Siesta would
//!   pick different functions.
//! - Encoded slashes and backslashes (`%2F`, `%5C`, `\`) are forwarded as
//!   they are (Envoy's default, `KEEP_UNCHANGED`), except when the path also
//!   has a dot segment, in either reading: nginx decodes `%2F` and resolves
//!   `/a/..%2fb` to `/b`, Envoy's default and RFC 3986 see one segment
//!   `..%2fb`; a backend that decodes (or treats `\` as `/`) would climb.
//!   Such paths are refused, whatever the function.
//! - A segment that is a dot segment up to a `;` (`..;x`, Tomcat's path
//!   parameters) is refused for the same reason.
//! - A malformed percent-encoding (`%zz`, a lone `%`) and `%00` are refused
//!   (nginx: 400 for both).
//! - Nothing else is decoded or rewritten: the query is untouched, empty
//!   segments are kept (`//` is not merged), other escapes stay as sent.

use std::borrow::Cow;
use std::fmt;

/// Why a path cannot be resolved to one meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// `%` not followed by two hex digits.
    BadPercentEncoding,
    /// `%00`.
    EncodedNul,
    /// A `..` above the root.
    AboveRoot,
    /// A `..` popping an empty segment (`//..`).
    DotDotAfterEmptySegment,
    /// A dot segment hidden behind an encoded slash, a backslash or a `;`,
    /// or an encoded slash in a path with dot segments.
    Ambiguous,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::BadPercentEncoding => "a malformed percent-encoding (% must be followed by two hex digits)",
            PathError::EncodedNul => "an encoded NUL byte (%00)",
            PathError::AboveRoot => "a `..` segment that climbs above the root",
            PathError::DotDotAfterEmptySegment => {
                "a `..` segment after an empty segment (`//..`), which proxies that merge slashes resolve differently"
            }
            PathError::Ambiguous => {
                "a dot segment next to an encoded slash or backslash (%2F, %5C, \\) or a `;`, which proxies resolve differently"
            }
        })
    }
}

/// A segment that is `.` or `..`, with each dot possibly written `%2e`/`%2E`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dot {
    One,
    Two,
}

fn dot(segment: &str) -> Option<Dot> {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && rest[0] == b'%' && rest[1] == b'2' && rest[2] | 0x20 == b'e' {
            rest = &rest[3..];
        } else {
            return None;
        }
        dots += 1;
        if dots > 2 {
            return None;
        }
    }
    match dots {
        1 => Some(Dot::One),
        2 => Some(Dot::Two),
        _ => None,
    }
}

/// Whether a segment resolves as a dot segment (`.`, `..`, `%2e`, ...).
pub fn is_dot_segment(segment: &str) -> bool {
    dot(segment).is_some()
}

/// Checks every `%` escape; `true` when the path has an encoded slash or
/// backslash (or a raw backslash).
fn check_escapes(path: &str) -> Result<bool, PathError> {
    let b = path.as_bytes();
    let mut separators = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => separators = true,
            b'%' => {
                let (Some(&h), Some(&l)) = (b.get(i + 1), b.get(i + 2)) else {
                    return Err(PathError::BadPercentEncoding);
                };
                if !h.is_ascii_hexdigit() || !l.is_ascii_hexdigit() {
                    return Err(PathError::BadPercentEncoding);
                }
                match (h, l | 0x20) {
                    (b'0', b'0') => return Err(PathError::EncodedNul),
                    (b'2', b'f') | (b'5', b'c') => separators = true,
                    _ => {}
                }
                i += 2;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(separators)
}

/// The length of the separator at `b[i..]` for a reader that decodes:
/// a backslash, `%2F` or `%5C` (any case); 0 when there is none.
fn decoded_separator(b: &[u8], i: usize) -> usize {
    match b[i] {
        b'\\' => 1,
        b'%' => match (b.get(i + 1), b.get(i + 2).map(|c| c | 0x20)) {
            (Some(b'2'), Some(b'f')) | (Some(b'5'), Some(b'c')) => 3,
            _ => 0,
        },
        _ => 0,
    }
}

/// The dot segments a decoding reader would see: the path split on `/`,
/// backslashes, `%2F` and `%5C`, each piece cut at its first `;`.
fn dots_when_decoded(path: &str) -> usize {
    let b = path.as_bytes();
    let mut count = 0;
    let mut start = 0;
    let mut i = 0;
    while i <= b.len() {
        let sep = if i == b.len() || b[i] == b'/' {
            1
        } else {
            decoded_separator(b, i)
        };
        if sep == 0 {
            i += 1;
            continue;
        }
        let piece = &path[start..i];
        let before_params = piece.split(';').next().unwrap_or(piece);
        if dot(before_params).is_some() {
            count += 1;
        }
        i += sep;
        start = i;
    }
    count
}

/// Resolves the dot segments of `path` (which starts with `/` and has no
/// query). Borrows when there is nothing to resolve, the common case.
pub fn resolve_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    debug_assert!(path.starts_with('/'), "{path:?}");
    // With no dot and no escape there is nothing to resolve or refuse:
    // the common case, in one pass over the bytes.
    if !path.bytes().any(|b| b == b'.' || b == b'%') {
        return Ok(Cow::Borrowed(path));
    }
    resolve_checked(path)
}

/// [`resolve_path`] without its shortcut: every check made.
fn resolve_checked(path: &str) -> Result<Cow<'_, str>, PathError> {
    let separators = check_escapes(path)?;
    let body = path.strip_prefix('/').unwrap_or(path);
    let raw_dots = body.split('/').filter(|s| dot(s).is_some()).count();
    let decoded_dots = dots_when_decoded(body);
    if decoded_dots != raw_dots || (raw_dots > 0 && separators) {
        return Err(PathError::Ambiguous);
    }
    if raw_dots == 0 {
        return Ok(Cow::Borrowed(path));
    }
    let mut out: Vec<&str> = Vec::new();
    let mut last_was_dot = false;
    for segment in body.split('/') {
        last_was_dot = true;
        match dot(segment) {
            Some(Dot::One) => {}
            Some(Dot::Two) => match out.pop() {
                None => return Err(PathError::AboveRoot),
                Some("") => return Err(PathError::DotDotAfterEmptySegment),
                Some(_) => {}
            },
            None => {
                last_was_dot = false;
                out.push(segment);
            }
        }
    }
    // `/a/b/..` is `/a/`: a final dot segment leaves a directory.
    if last_was_dot {
        out.push("");
    }
    let mut resolved = String::with_capacity(path.len());
    for segment in out {
        resolved.push('/');
        resolved.push_str(segment);
    }
    if resolved.is_empty() {
        resolved.push('/');
    }
    Ok(Cow::Owned(resolved))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(path: &str) -> String {
        resolve_path(path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .into_owned()
    }

    #[test]
    fn paths_without_dot_segments_are_kept_byte_for_byte() {
        for p in [
            "/",
            "/a",
            "/a/",
            "/a//b",
            "//",
            "/a%2Fb",
            "/a%5cb",
            "/a\\b",
            "/.../b",
            "/..a/b",
            "/a..",
            "/a.%2e",
            "/%2e%2e%2e",
            "/%252e%252e/x",
            "/a;b",
            "/%41%7e",
            "/ä",
        ] {
            assert!(matches!(resolve_path(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn the_shortcut_answers_as_the_full_checks_do() {
        // Paths with no `.` and no `%`, the shortcut's, of every other
        // kind: separators, empty segments, parameters, controls, UTF-8.
        for p in [
            "/", "/a", "/a/", "//", "/a//b", "/a\\b", "/\\", "/a;b", "/a;b/c;d", "/a b", "/\t",
            "/ä/ö", "/a:b@c", "/~x/+y", "/a?b",
        ] {
            assert!(!p.contains(['.', '%']), "{p}");
            assert_eq!(resolve_checked(p), Ok(Cow::Borrowed(p)), "{p}");
            assert_eq!(resolve_path(p), resolve_checked(p), "{p}");
        }
    }

    #[test]
    fn dot_segments_resolve_as_rfc_3986_says() {
        // RFC 3986 §5.2.4 and its §5.4 examples, within the root.
        assert_eq!(ok("/a/b/c/./../../g"), "/a/g");
        assert_eq!(ok("/a/../b"), "/b");
        assert_eq!(ok("/a/./b"), "/a/b");
        assert_eq!(ok("/a/.."), "/");
        assert_eq!(ok("/a/."), "/a/");
        assert_eq!(ok("/a/b/.."), "/a/");
        assert_eq!(ok("/."), "/");
        assert_eq!(ok("/./"), "/");
        assert_eq!(ok("/a/./"), "/a/");
        assert_eq!(ok("/a//./b"), "/a//b");
        assert_eq!(ok("/a;/../b"), "/b");
        assert_eq!(ok("/a/b/../c/./d/"), "/a/c/d/");
    }

    #[test]
    fn percent_encoded_dots_are_dots() {
        assert_eq!(ok("/a/%2e%2e/b"), "/b");
        assert_eq!(ok("/a/%2E%2E/b"), "/b");
        assert_eq!(ok("/a/.%2e/b"), "/b");
        assert_eq!(ok("/a/%2E./b"), "/b");
        assert_eq!(ok("/a/%2e/b"), "/a/b");
        assert_eq!(ok("/a/b/%2e%2e"), "/a/");
        assert_eq!(ok("/%2e"), "/");
    }

    #[test]
    fn climbing_above_the_root_is_refused() {
        for p in [
            "/..",
            "/../x",
            "/../../etc/passwd",
            "/a/../..",
            "/%2e%2e/x",
            "/a/b/../../..",
        ] {
            assert_eq!(resolve_path(p), Err(PathError::AboveRoot), "{p}");
        }
    }

    #[test]
    fn a_dot_dot_after_an_empty_segment_is_refused() {
        for p in ["//..", "/a//..", "/fn/ns/f//../g", "/a//%2e%2e/b"] {
            assert_eq!(
                resolve_path(p),
                Err(PathError::DotDotAfterEmptySegment),
                "{p}"
            );
        }
    }

    #[test]
    fn dots_hidden_behind_encoded_slashes_backslashes_or_params_are_refused() {
        for p in [
            "/a/..%2fb",
            "/a/..%2Fb",
            "/a/%2e%2e%2fb",
            "/a/..%5cb",
            "/a/..\\b",
            "/a\\..\\..\\b",
            "/a%2f..%2fb",
            "/a/..;/b",
            "/a/.;x/b",
            "/fn/ns/f/..%2fg/x",
            // A real dot segment next to an encoded slash: nginx pops two
            // segments where RFC 3986 pops one.
            "/a%2Fb/..",
            "/fn/ns/f/a%2Fb/../../g/x",
            "/a\\b/../c",
        ] {
            assert_eq!(resolve_path(p), Err(PathError::Ambiguous), "{p}");
        }
    }

    #[test]
    fn bad_escapes_and_nul_are_refused() {
        for p in ["/a%", "/a%2", "/a%zz", "/a%g0", "/%%", "/a%2/b"] {
            assert_eq!(resolve_path(p), Err(PathError::BadPercentEncoding), "{p}");
        }
        assert_eq!(resolve_path("/a%00b"), Err(PathError::EncodedNul));
        assert_eq!(resolve_path("/a/..%00/b"), Err(PathError::EncodedNul));
    }

    #[test]
    fn resolving_twice_changes_nothing() {
        let alphabet: Vec<&str> = vec![
            "/", ".", "%2e", "%2E", "a", "%2f", "\\", ";", "%", "2", "e", "f",
        ];
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        let mut resolved = 0;
        for _ in 0..50_000 {
            let mut p = String::from("/");
            for _ in 0..(seed % 12) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                p.push_str(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            if let Ok(r) = resolve_path(&p) {
                resolved += 1;
                assert!(r.starts_with('/'), "{p} -> {r}");
                assert!(!r.split('/').any(is_dot_segment), "{p} -> {r}");
                assert_eq!(resolve_path(&r).as_deref(), Ok(r.as_ref()), "{p} -> {r}");
            }
        }
        assert!(resolved > 1000, "only {resolved} paths resolved");
    }
}
