//! What `optimizeBandwidth` keeps a session's pages from loading: resource types (images,
//! media, stylesheets), hosts (a name also blocks its subdomains) and URL patterns (`*`
//! matches any run of characters, the rest literally).
//!
//! The page agent (`worker::agent`) pauses candidate requests with `Fetch.enable`
//! ([`Blocker::patterns`]) and decides each with [`Blocker::blocks`]: Chromium's URL patterns
//! are only a coarse first filter (`*://h/*` also matches `https://x/?q=://h/`), the final
//! word is here.

use chromiumoxide::cdp::browser_protocol::fetch::{RequestPattern, RequestStage};
use chromiumoxide::cdp::browser_protocol::network::ResourceType;

use crate::protocol::session::OptimizeBandwidth;

/// What one session blocks.
#[derive(Debug, Clone, Default)]
pub struct Blocker {
    types: Vec<ResourceType>,
    /// Lower case, IDNs in punycode, no trailing dot.
    hosts: Vec<String>,
    patterns: Vec<String>,
}

impl Blocker {
    /// The blocker of `opt`; `None` when it blocks nothing.
    pub fn of(opt: &OptimizeBandwidth) -> Option<Self> {
        if opt.is_off() {
            return None;
        }
        let mut types = Vec::new();
        if opt.block_images {
            types.push(ResourceType::Image);
        }
        if opt.block_media {
            types.push(ResourceType::Media);
        }
        if opt.block_stylesheets {
            types.push(ResourceType::Stylesheet);
        }
        let hosts = opt
            .block_hosts
            .iter()
            .filter_map(|h| canonical_host(h))
            .collect();
        Some(Blocker {
            types,
            hosts,
            patterns: opt.block_url_patterns.clone(),
        })
    }

    /// The `Fetch.enable` patterns that pause every request this may block (and a few it
    /// will let through).
    pub fn patterns(&self) -> Vec<RequestPattern> {
        let stage = Some(RequestStage::Request);
        let mut out: Vec<RequestPattern> = self
            .types
            .iter()
            .map(|t| RequestPattern {
                url_pattern: None,
                resource_type: Some(t.clone()),
                request_stage: stage.clone(),
            })
            .collect();
        let url = |p: String| RequestPattern {
            url_pattern: Some(p),
            resource_type: None,
            request_stage: stage.clone(),
        };
        for host in &self.hosts {
            // With and without a port and a trailing dot (`ads.example.com.` is the same
            // host), the host itself and its subdomains.
            let h = escape(host);
            for dot in ["", "."] {
                for p in [
                    format!("*://{h}{dot}/*"),
                    format!("*://{h}{dot}:*"),
                    format!("*://*.{h}{dot}/*"),
                    format!("*://*.{h}{dot}:*"),
                ] {
                    out.push(url(p));
                }
            }
        }
        for p in &self.patterns {
            // Chromium's patterns know `?` and `\` too: taken literally here.
            out.push(url(escape(p)));
        }
        out
    }

    /// True when a request for `url` of type `kind` must fail.
    pub fn blocks(&self, url: &str, kind: &ResourceType) -> bool {
        if self.types.contains(kind) {
            return true;
        }
        if !self.hosts.is_empty()
            && let Some(host) = url::Url::parse(url).ok().and_then(|u| {
                // The URL parser gives a domain in punycode, lower case.
                u.host_str()
                    .map(|h| h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase())
            })
            && self.hosts.iter().any(|b| host_within(&host, b))
        {
            return true;
        }
        self.patterns.iter().any(|p| glob(p, url))
    }
}

/// A `blockHosts` entry as the URL parser writes a host: lower case, an IDN in punycode, an
/// IPv6 address in brackets, without its trailing dot; `None` if it is not a host.
fn canonical_host(entry: &str) -> Option<String> {
    let entry = entry.trim();
    let entry = entry.strip_suffix('.').unwrap_or(entry);
    let host = url::Host::parse(entry).ok()?.to_string();
    (!host.is_empty()).then_some(host)
}

/// True when `host` is `blocked` or one of its subdomains.
fn host_within(host: &str, blocked: &str) -> bool {
    host == blocked
        || host
            .strip_suffix(blocked)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// `text` escaped for a Chromium URL pattern, `*` kept as the wildcard.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '?' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// True when `pattern` (`*` = any run of characters) matches all of `text`. Linear in
/// practice: the classic greedy match with one backtrack point.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocker(hosts: &[&str], patterns: &[&str]) -> Blocker {
        Blocker::of(&OptimizeBandwidth {
            block_images: true,
            block_hosts: hosts.iter().map(|s| s.to_string()).collect(),
            block_url_patterns: patterns.iter().map(|s| s.to_string()).collect(),
            ..OptimizeBandwidth::default()
        })
        .unwrap()
    }

    #[test]
    fn nothing_to_block_needs_no_blocker() {
        assert!(Blocker::of(&OptimizeBandwidth::default()).is_none());
        assert_eq!(
            Blocker::of(&OptimizeBandwidth::all_types())
                .unwrap()
                .patterns()
                .len(),
            3
        );
    }

    #[test]
    fn hosts_block_themselves_and_their_subdomains_only() {
        let b = blocker(&["Ads.Example.com."], &[]);
        let doc = ResourceType::Document;
        for url in [
            "https://ads.example.com/x.js",
            "http://ADS.example.com:8080/",
            "https://a.b.ads.example.com/",
            "https://ads.example.com./",
        ] {
            assert!(b.blocks(url, &doc), "{url}");
        }
        for url in [
            "https://example.com/",
            "https://badads.example.com/",
            "https://ads.example.com.evil.net/",
            "https://evil.net/?u=https://ads.example.com/",
            "not a url",
        ] {
            assert!(!b.blocks(url, &doc), "{url}");
        }
        // Images go whatever their host.
        assert!(b.blocks("https://example.com/a.png", &ResourceType::Image));
        assert!(!b.blocks("https://example.com/a.css", &ResourceType::Stylesheet));
    }

    #[test]
    fn url_patterns_match_whole_urls_with_star() {
        let b = blocker(
            &[],
            &["*.woff2", "https://cdn.example.com/*", "*track?id=*"],
        );
        let doc = ResourceType::Document;
        assert!(b.blocks("https://x.com/font.woff2", &doc));
        assert!(!b.blocks("https://x.com/font.woff2?v=1", &doc));
        assert!(b.blocks("https://cdn.example.com/a/b", &doc));
        assert!(!b.blocks("http://cdn.example.com/a/b", &doc));
        // `?` is literal.
        assert!(b.blocks("https://t.com/track?id=7", &doc));
        assert!(!b.blocks("https://t.com/trackXid=7", &doc));
        // A hostile pattern stays fast.
        let nasty = "*a".repeat(200);
        let b = blocker(&[], &[&nasty]);
        assert!(!b.blocks(&"a".repeat(4000).replace("aaaa", "aab"), &doc));
    }

    #[test]
    fn chromium_patterns_escape_its_metacharacters() {
        let b = blocker(&["h.com"], &["a?b\\c*"]);
        let pats: Vec<String> = b
            .patterns()
            .into_iter()
            .filter_map(|p| p.url_pattern)
            .collect();
        assert!(pats.contains(&"*://h.com/*".to_string()));
        assert!(pats.contains(&"*://*.h.com:*".to_string()));
        assert!(pats.contains(&"a\\?b\\\\c*".to_string()));
        // A host spelt with its trailing dot is paused too.
        assert!(pats.contains(&"*://h.com./*".to_string()));
        assert!(pats.contains(&"*://*.h.com.:*".to_string()));
    }

    /// An IDN blocks its punycode form (what a request's URL holds), and a host with one
    /// trailing dot is the same host.
    #[test]
    fn idns_and_trailing_dots_are_matched_as_the_browser_spells_them() {
        let b = blocker(&["Bücher.example", "10.0.0.7", "[::1]"], &[]);
        let doc = ResourceType::Document;
        for url in [
            "https://xn--bcher-kva.example/a",
            "https://bücher.example/a",
            "https://cdn.xn--bcher-kva.example./a",
            "http://10.0.0.7:8080/",
            "http://[::1]:9/",
        ] {
            assert!(b.blocks(url, &doc), "{url}");
        }
        assert!(!b.blocks("https://bucher.example/", &doc));
        let pats: Vec<String> = b
            .patterns()
            .into_iter()
            .filter_map(|p| p.url_pattern)
            .collect();
        assert!(pats.contains(&"*://xn--bcher-kva.example/*".to_string()));
    }
}
