//! The signature's layout, its checks and the replay cache, without a network.

use super::*;

const NOW: u64 = 1_800_000_000;
const PATH: &str = "/bro/node/v1/host/launch?x=1";
const NODE: &str = "n2";

fn secret(fill: u8) -> ClusterSecret {
    ClusterSecret::from_bytes(vec![fill; 32]).unwrap()
}

fn verifier() -> NodeVerifier {
    NodeVerifier::new(secret(b'a'), NODE.into())
}

/// A POST of `body` to [`PATH`] on [`NODE`].
fn request(body: &[u8]) -> Signed<'static> {
    Signed {
        target: NODE,
        method: &Method::POST,
        path_and_query: PATH,
        content: Content::of_body(body),
        files_of: None,
        min_size: None,
    }
}

/// The headers of `signed` signed at `at`, plus its upload headers.
fn headers_of(secret: &ClusterSecret, signed: &Signed<'_>, at: u64) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in sign(secret, signed, at).unwrap() {
        headers.insert(name, value);
    }
    for (name, value) in [
        (FILES_OF_HEADER, signed.files_of),
        (MIN_SIZE_HEADER, signed.min_size),
    ] {
        if let Some(value) = value {
            headers.insert(name, HeaderValue::from_bytes(value).unwrap());
        }
    }
    headers
}

fn check(v: &NodeVerifier, path: &str, headers: &HeaderMap) -> Result<Content, AuthError> {
    v.verify(&Method::POST, path, headers, NOW)
}

#[test]
fn the_signed_string_is_the_documented_one() {
    let signed = Signed {
        target: "node-b",
        method: &Method::POST,
        path_and_query: "/bro/node/v1/host/upload_file",
        content: Content::Unsigned,
        files_of: Some(b"eyJ9"),
        min_size: Some(b"42"),
    };
    let text = message(&signed, 1_800_000_000, &[0xab; 16]);
    assert_eq!(
        String::from_utf8(text).unwrap(),
        "bro-node-v2\n1800000000\nabababababababababababababababab\nnode-b\nPOST\n\
         /bro/node/v1/host/upload_file\nUNSIGNED-PAYLOAD\neyJ9\n42"
    );
    let get = Signed {
        target: "node-b",
        method: &Method::GET,
        path_and_query: "/?sessionId=s",
        content: Content::empty(),
        files_of: None,
        min_size: None,
    };
    let text = String::from_utf8(message(&get, 7, &[0; 16])).unwrap();
    assert_eq!(
        text,
        format!(
            "bro-node-v2\n7\n{}\nnode-b\nGET\n/?sessionId=s\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\n",
            "0".repeat(32)
        )
    );
}

#[test]
fn a_good_signature_passes_once_within_the_window() {
    let v = verifier();
    for at in [NOW, NOW - MAX_SKEW_SECS, NOW + MAX_SKEW_SECS] {
        let headers = headers_of(&secret(b'a'), &request(b"{}"), at);
        assert_eq!(check(&v, PATH, &headers), Ok(Content::of_body(b"{}")));
        // The same header again, with the same body: a replay.
        assert_eq!(check(&v, PATH, &headers), Err(AuthError::Replayed));
    }
    // Two signatures of the same request differ in their nonce; both pass.
    let one = headers_of(&secret(b'a'), &request(b"{}"), NOW);
    let two = headers_of(&secret(b'a'), &request(b"{}"), NOW);
    assert_ne!(one[NODE_AUTH_HEADER], two[NODE_AUTH_HEADER]);
    assert!(check(&v, PATH, &one).is_ok() && check(&v, PATH, &two).is_ok());
}

#[test]
fn the_signed_digest_must_be_the_body_read() {
    let v = verifier();
    let headers = headers_of(&secret(b'a'), &request(b"{\"a\":1}"), NOW);
    let content = check(&v, PATH, &headers).unwrap();
    assert_eq!(content.check_body(b"{\"a\":1}"), Ok(()));
    assert_eq!(
        content.check_body(b"{\"a\":2}"),
        Err(AuthError::BodyMismatch)
    );
    // A digest header swapped for another body's no longer matches the MAC.
    let mut swapped = headers_of(&secret(b'a'), &request(b"{\"a\":1}"), NOW);
    let other = Content::of_body(b"{\"a\":2}").header_value();
    swapped.insert(CONTENT_SHA256_HEADER, HeaderValue::try_from(other).unwrap());
    assert_eq!(check(&v, PATH, &swapped), Err(AuthError::BadSignature));
    // An unsigned payload never passes for a buffered body.
    assert_eq!(
        Content::Unsigned.check_body(b""),
        Err(AuthError::BodyMismatch)
    );
}

#[test]
fn another_secret_node_method_path_or_header_fails() {
    let v = verifier();
    let bad = Err(AuthError::BadSignature);
    let other_secret = headers_of(&secret(b'b'), &request(b""), NOW);
    assert_eq!(check(&v, PATH, &other_secret), bad);
    let for_node_a = Signed {
        target: "n1",
        ..request(b"")
    };
    assert_eq!(
        check(&v, PATH, &headers_of(&secret(b'a'), &for_node_a, NOW)),
        bad
    );
    let signed = headers_of(&secret(b'a'), &request(b""), NOW);
    assert_eq!(check(&v, "/bro/node/v1/host/stop", &signed), bad);
    assert_eq!(check(&v, "/bro/node/v1/host/launch", &signed), bad);
    assert_eq!(v.verify(&Method::GET, PATH, &signed, NOW), bad);
    // A timestamp changed after signing.
    let value = signed[NODE_AUTH_HEADER].to_str().unwrap();
    let mut moved = signed.clone();
    let later = format!("{}{}", NOW + 1, &value[10..]);
    moved.insert(NODE_AUTH_HEADER, HeaderValue::try_from(later).unwrap());
    assert_eq!(check(&v, PATH, &moved), bad);
    // An upload header added, changed or dropped after signing.
    let upload = Signed {
        content: Content::Unsigned,
        files_of: Some(b"of-a"),
        min_size: Some(b"10"),
        ..request(b"")
    };
    let headers = headers_of(&secret(b'a'), &upload, NOW);
    for (name, value) in [(FILES_OF_HEADER, Some("of-b")), (MIN_SIZE_HEADER, None)] {
        let mut changed = headers.clone();
        match value {
            Some(value) => changed.insert(name, HeaderValue::from_static(value)),
            None => changed.remove(name),
        };
        assert_eq!(check(&v, PATH, &changed), bad, "{name}");
    }
    let mut added = headers_of(&secret(b'a'), &request(b""), NOW);
    added.insert(FILES_OF_HEADER, HeaderValue::from_static("of-a"));
    assert_eq!(check(&v, PATH, &added), bad);
    assert_eq!(check(&v, PATH, &headers), Ok(Content::Unsigned));
}

#[test]
fn a_timestamp_past_the_window_fails() {
    let v = verifier();
    for at in [NOW - MAX_SKEW_SECS - 1, NOW + MAX_SKEW_SECS + 1, 0] {
        let headers = headers_of(&secret(b'a'), &request(b""), at);
        assert_eq!(
            check(&v, PATH, &headers),
            Err(AuthError::Skewed {
                signed: at,
                now: NOW
            })
        );
    }
    assert_eq!(MAX_SKEW_SECS, 30);
}

#[test]
fn a_full_cache_refuses_with_503_until_nonces_expire() {
    let v = NodeVerifier::with_capacity(secret(b'a'), NODE.into(), 2);
    for _ in 0..2 {
        assert!(check(&v, PATH, &headers_of(&secret(b'a'), &request(b""), NOW)).is_ok());
    }
    let third = headers_of(&secret(b'a'), &request(b""), NOW);
    let full = check(&v, PATH, &third).unwrap_err();
    assert_eq!(full, AuthError::Full(2));
    assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Refused requests are not remembered: past the window the cache has room again.
    let later = NOW + 2 * MAX_SKEW_SECS;
    let fresh = headers_of(&secret(b'a'), &request(b""), later);
    assert!(v.verify(&Method::POST, PATH, &fresh, later).is_ok());
    // A bad signature takes no room either.
    let v = NodeVerifier::with_capacity(secret(b'a'), NODE.into(), 1);
    let wrong = headers_of(&secret(b'b'), &request(b""), NOW);
    assert_eq!(check(&v, PATH, &wrong), Err(AuthError::BadSignature));
    assert!(check(&v, PATH, &headers_of(&secret(b'a'), &request(b""), NOW)).is_ok());
}

#[test]
fn a_missing_or_garbage_header_fails() {
    let v = verifier();
    assert_eq!(check(&v, PATH, &HeaderMap::new()), Err(AuthError::Missing));
    let good = headers_of(&secret(b'a'), &request(b""), NOW);
    let value = good[NODE_AUTH_HEADER].to_str().unwrap().to_owned();
    let (nonce, mac) = (&value[11..43], &value[44..]);
    let garbage = [
        ".".to_owned(),
        "garbage".into(),
        format!("{NOW}"),
        format!("{NOW}.{nonce}"),
        format!("{NOW}.{mac}"),
        format!("{NOW}.{nonce}.{mac}.{mac}"),
        format!("{NOW}.{nonce}.{mac}."),
        format!(".{nonce}.{mac}"),
        format!("-{NOW}.{nonce}.{mac}"),
        format!("+{NOW}.{nonce}.{mac}"),
        format!(" {NOW}.{nonce}.{mac}"),
        format!("{NOW}.{nonce}.{mac}0"),
        format!("{NOW}.{nonce}0.{mac}"),
        format!("{NOW}.{}.{mac}", &nonce[1..]),
        format!("{NOW}.{nonce}.{}g", &mac[1..]),
        format!("{NOW}.{nonce}.{}", mac.to_uppercase()),
        format!("{}{NOW}.{nonce}.{mac}", "0".repeat(11)),
        format!("99999999999999999999.{nonce}.{mac}"),
    ];
    for value in garbage {
        let mut headers = good.clone();
        headers.insert(
            NODE_AUTH_HEADER,
            HeaderValue::try_from(value.as_str()).unwrap(),
        );
        assert_eq!(
            check(&v, PATH, &headers),
            Err(AuthError::Malformed),
            "{value:?}"
        );
    }
    // A repeated signature, or a bad, repeated or empty signed header.
    let mut twice = good.clone();
    twice.append(NODE_AUTH_HEADER, good[NODE_AUTH_HEADER].clone());
    let mut bad_digest = good.clone();
    bad_digest.insert(CONTENT_SHA256_HEADER, HeaderValue::from_static("unsigned"));
    let mut two_of = good.clone();
    two_of.append(FILES_OF_HEADER, HeaderValue::from_static("a"));
    two_of.append(FILES_OF_HEADER, HeaderValue::from_static("b"));
    let mut empty_size = good.clone();
    empty_size.insert(MIN_SIZE_HEADER, HeaderValue::from_static(""));
    for headers in [twice, bad_digest, two_of, empty_size] {
        assert_eq!(check(&v, PATH, &headers), Err(AuthError::Malformed));
    }
    // None of that used the nonce up.
    assert!(check(&v, PATH, &good).is_ok());
}
