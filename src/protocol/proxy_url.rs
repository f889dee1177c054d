//! Credentials in a `proxyUrl`: the `url` crate says where they are and checks every cut, but
//! the text handed back keeps the caller's spelling. `url::Url` re-serialises (a trailing `/`,
//! a lowercased host, percent-encoding), and a redacted proxy URL is on the wire.

use std::ops::Range;

use url::{Position, Url};

/// What stands for a password that is not shown.
const MASK: &str = "***";

/// `user:secret@host` → `user:***@host`, so proxy credentials never leave the daemon.
///
/// Text `url` refuses is cut up to the last `@` after `://`: error
/// messages quote such text, and must not show its password either.
pub fn redact_proxy(text: &str) -> String {
    let Ok(url) = Url::parse(text) else {
        return mask_password(text, first_userinfo(text)).unwrap_or_else(|| text.to_string());
    };
    let redacted = mask_password(text, userinfo(text)).filter(|redacted| {
        Url::parse(redacted).is_ok_and(|r| {
            r.username() == url.username() && r.password() == Some(MASK) && same_place(&r, &url)
        })
    });
    match redacted {
        Some(redacted) => redacted,
        None if url.password().is_none() => text.to_string(),
        // Credentials `url` finds where the text does not show them plainly (`http:u:p@h`):
        // its own spelling, then, rather than a password.
        None => {
            let mut url = url;
            match url.set_password(Some(MASK)) {
                Ok(()) => url.into(),
                Err(()) => MASK.to_string(),
            }
        }
    }
}

/// `http://user:pw@host:1` → `http://host:1`: for a command line, which any local user can
/// read.
pub fn strip_credentials(text: &str) -> String {
    let Ok(url) = Url::parse(text) else {
        return cut(text, first_userinfo(text)).unwrap_or_else(|| text.to_string());
    };
    let stripped = cut(text, userinfo(text)).filter(|stripped| {
        Url::parse(stripped).is_ok_and(|s| {
            s.username().is_empty() && s.password().is_none() && same_place(&s, &url)
        })
    });
    match stripped {
        Some(stripped) => stripped,
        None if url.username().is_empty() && url.password().is_none() => text.to_string(),
        None => format!(
            "{}://{}",
            url.scheme(),
            &url[Position::BeforeHost..Position::AfterPort]
        ),
    }
}

/// Where the userinfo of `text` sits (its `@` excluded): after `://`, up to the last `@`
/// before the path, query or fragment, as `url` reads it. Callers check the cut with `url`,
/// so a spelling this misreads costs only the original text, never a password.
fn userinfo(text: &str) -> Option<Range<usize>> {
    let start = text.find("://")? + 3;
    let rest = &text[start..];
    let authority = &rest[..rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len())];
    let at = authority.rfind('@')?;
    Some(start..start + at)
}

/// The userinfo of text `url` refuses: after `://`, up to the last `@` (so an `@` in a
/// password never leaves part of it outside the cut; masking too much is the safe side).
fn first_userinfo(text: &str) -> Option<Range<usize>> {
    let start = text.find("://")? + 3;
    let at = text[start..].rfind('@')?;
    Some(start..start + at)
}

/// `text` with the password in `userinfo` (after its first `:`) masked.
fn mask_password(text: &str, userinfo: Option<Range<usize>>) -> Option<String> {
    let userinfo = userinfo?;
    let colon = text[userinfo.clone()].find(':')?;
    Some(format!(
        "{}{MASK}{}",
        &text[..=userinfo.start + colon],
        &text[userinfo.end..]
    ))
}

/// `text` without `userinfo` and its `@`.
fn cut(text: &str, userinfo: Option<Range<usize>>) -> Option<String> {
    let userinfo = userinfo?;
    Some(format!(
        "{}{}",
        &text[..userinfo.start],
        &text[userinfo.end + 1..]
    ))
}

/// True when `a` and `b` are the same but for their credentials.
fn same_place(a: &Url, b: &Url) -> bool {
    a[..Position::BeforeUsername] == b[..Position::BeforeUsername]
        && a[Position::BeforeHost..] == b[Position::BeforeHost..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_in_the_original_spelling() {
        for (text, want) in [
            ("http://u:p@h:1", "http://u:***@h:1"),
            ("http://h:1", "http://h:1"),
            ("socks5://u@h", "socks5://u@h"),
            ("http://u:@h", "http://u:***@h"),
            ("http://:p@h", "http://:***@h"),
            ("HTTP://U:P@Proxy.Example", "HTTP://U:***@Proxy.Example"),
            ("http://us%40er:p%40ss@h:1", "http://us%40er:***@h:1"),
            // An `@` in the password belongs to it: the last one ends the userinfo.
            ("http://u:p@ss@h:1", "http://u:***@h:1"),
            ("http://u:p%40ss@h:1", "http://u:***@h:1"),
            ("http://u:p@[::1]:8080", "http://u:***@[::1]:8080"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("http://[::1]:1/a:b@c", "http://[::1]:1/a:b@c"),
            ("http://h:1/a:b@c?d@e#f@g", "http://h:1/a:b@c?d@e#f@g"),
            ("http://u:p@h:1/a@b", "http://u:***@h:1/a@b"),
            ("socks5://u:p\\q@h", "socks5://u:***@h"),
            ("http:u:p@h", "http://u:***@h/"),
            // Refused by `url`: the cut it always had.
            ("not a url", "not a url"),
            ("http://u:p@", "http://u:***@"),
            ("http://u:p@h:99999", "http://u:***@h:99999"),
            ("http://u@h:99999", "http://u@h:99999"),
        ] {
            assert_eq!(redact_proxy(text), want, "{text}");
        }
    }

    #[test]
    fn credentials_are_stripped_in_the_original_spelling() {
        for (text, want) in [
            ("http://u:p@proxy:3128", "http://proxy:3128"),
            ("http://proxy:3128", "http://proxy:3128"),
            ("socks5://u@Proxy:1080", "socks5://Proxy:1080"),
            ("http://@h:1", "http://h:1"),
            ("http://u:p@ss@h:1", "http://h:1"),
            ("http://u:p@[::1]:8080", "http://[::1]:8080"),
            ("http://h:1/a@b", "http://h:1/a@b"),
            ("socks5://u:p\\q@h:1", "socks5://h:1"),
            ("http:u:p@h:1", "http://h:1"),
            ("not a url", "not a url"),
            ("http://u:p@h:99999", "http://h:99999"),
        ] {
            assert_eq!(strip_credentials(text), want, "{text}");
        }
    }
}
