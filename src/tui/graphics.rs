//! Which picture protocol the terminal speaks (sixel, kitty, iTerm2 or half blocks), asked
//! once at start without losing a key.
//!
//! `ratatui_image`'s own query reads stdin from a thread it leaves behind when the terminal does
//! not answer (tmux without a client, many terminals inside it): that thread then ate the first
//! key the user pressed, and keys typed while the query ran were dropped with its answers. Here
//! the query runs on the caller's thread, before the input stream starts, with one deadline:
//! bytes are read straight from the descriptor (no `std` buffer to strand them in), the
//! answers are taken out, and every other byte is decoded back into the keys it was, for the
//! event loop to handle first.

use std::io::Write;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use ratatui_image::FontSize;
use ratatui_image::picker::cap_parser::{Parser, QueryStdioOptions, Response};
use ratatui_image::picker::{Picker, ProtocolType};

/// How long the terminal has to answer; it ends early on the answer to the last question.
pub const QUERY_DEADLINE: Duration = Duration::from_millis(1000);
/// The most bytes read while waiting: answers are a few dozen, a paste may not grow this.
const MAX_READ: usize = 4096;

/// Asks the terminal on stdin/stdout and returns the picker with the keys typed meanwhile.
/// Half blocks, and no query, when stdin is not a terminal.
pub fn query_terminal() -> (Picker, Vec<KeyEvent>) {
    let base = Picker::halfblocks(); // detects tmux (and lets pictures through it)
    let stdin = std::io::stdin();
    if !std::io::IsTerminal::is_terminal(&stdin) {
        return (base, Vec::new());
    }
    let mut options = QueryStdioOptions::default();
    // As `ratatui_image` does: these two draw kitty and sixel wrongly.
    if ["WEZTERM_EXECUTABLE", "KONSOLE_VERSION"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()))
    {
        options.blacklist_protocols = vec![ProtocolType::Kitty, ProtocolType::Sixel];
    }
    let query = Parser::query(base.tmux_detected(), options);
    let mut out = std::io::stdout();
    if out
        .write_all(query.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return (base, Vec::new());
    }
    let bytes = read_until_status(&stdin, Instant::now() + QUERY_DEADLINE);
    let split = split_answers(&bytes);
    (picker_from(&split.responses), decode_keys(&split.rest))
}

/// Reads what the terminal sends until it answers the status question (`ESC [ 0 n`), the
/// deadline passes or [`MAX_READ`] bytes came.
fn read_until_status(fd: &impl AsFd, deadline: Instant) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 256];
    while bytes.len() < MAX_READ && !contains(&bytes, b"\x1b[0n") {
        let left = deadline.saturating_duration_since(Instant::now());
        let millis = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        if millis == 0 {
            break;
        }
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(millis)) {
            Ok(0) => break,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        match nix::unistd::read(fd, &mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What the terminal said, taken apart.
#[derive(Debug, Default, PartialEq)]
struct Split {
    /// The answers to the query.
    responses: Vec<Response>,
    /// Every byte that was not an answer (keys the user typed), in order.
    rest: Vec<u8>,
}

/// Takes the query's answers out of `bytes`: device attributes (`ESC [ ? … c`), the cell size
/// (`ESC [ 6 ; h ; w t`), the status (`ESC [ 0 n`) and kitty's graphics reply
/// (`ESC _ G … ESC \`). Anything else, keys and their escape sequences, is kept in `rest`.
fn split_answers(bytes: &[u8]) -> Split {
    let mut split = Split::default();
    let mut i = 0;
    while i < bytes.len() {
        match answer_len(&bytes[i..]) {
            Some(n) => {
                let mut parser = Parser::new();
                for &b in &bytes[i..i + n] {
                    split.responses.extend(parser.push(char::from(b)));
                }
                i += n;
            }
            None => {
                split.rest.push(bytes[i]);
                i += 1;
            }
        }
    }
    split
}

/// The length of the answer that starts `bytes`, if one does.
fn answer_len(bytes: &[u8]) -> Option<usize> {
    match bytes {
        [0x1b, b'[', rest @ ..] => {
            // A CSI: parameters, then one final byte.
            let end = rest.iter().position(|b| (0x40..=0x7e).contains(b))?;
            let (params, last) = (&rest[..end], rest[end]);
            let answer = match last {
                b'c' => params.first() == Some(&b'?'),
                b't' => params.first() == Some(&b'6'),
                b'n' => params == b"0",
                _ => false,
            };
            answer.then_some(end + 3)
        }
        [0x1b, b'_', b'G', rest @ ..] => {
            let end = rest.windows(2).position(|w| w == b"\x1b\\")?;
            Some(end + 5)
        }
        _ => None,
    }
}

/// The picker the answers call for: kitty, else sixel, else what the environment suggests
/// (iTerm2 names itself there), at the cell size the terminal gave or its window reports.
fn picker_from(responses: &[Response]) -> Picker {
    let cell = responses.iter().find_map(|r| match r {
        Response::CellSize(Some((w, h))) => Some((*w, *h)),
        _ => None,
    });
    let cell = cell.or_else(|| {
        let size = crossterm::terminal::window_size().ok()?;
        (size.columns > 0 && size.rows > 0 && size.width > 0 && size.height > 0)
            .then(|| (size.width / size.columns, size.height / size.rows))
    });
    let Some((w, h)) = cell else {
        return Picker::halfblocks();
    };
    // Deprecated for `from_query_stdio`, which is what this module replaces; it still reads
    // the environment's hints (iTerm2, tmux) the same way.
    #[allow(deprecated)]
    let mut picker = Picker::from_fontsize(FontSize::new(w, h));
    if responses.contains(&Response::Kitty) {
        picker.set_protocol_type(ProtocolType::Kitty);
    } else if responses.contains(&Response::Sixel) {
        picker.set_protocol_type(ProtocolType::Sixel);
    }
    picker
}

/// Turns typed bytes back into keys: characters (UTF-8), enter, tab, backspace, escape,
/// ctrl-letters, arrows, home/end and back-tab. Other sequences are dropped.
pub fn decode_keys(bytes: &[u8]) -> Vec<KeyEvent> {
    let mut keys = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let (key, used) = decode_one(&bytes[i..]);
        keys.extend(key);
        i += used.max(1);
    }
    keys
}

fn decode_one(bytes: &[u8]) -> (Option<KeyEvent>, usize) {
    let plain = |code| Some(KeyEvent::new(code, KeyModifiers::NONE));
    match bytes {
        [0x1b, b'[' | b'O', rest @ ..] => {
            let Some(end) = rest.iter().position(|b| (0x40..=0x7e).contains(b)) else {
                return (None, bytes.len());
            };
            let code = match rest[end] {
                b'A' => Some(KeyCode::Up),
                b'B' => Some(KeyCode::Down),
                b'C' => Some(KeyCode::Right),
                b'D' => Some(KeyCode::Left),
                b'H' => Some(KeyCode::Home),
                b'F' => Some(KeyCode::End),
                b'Z' => Some(KeyCode::BackTab),
                _ => None,
            };
            (code.and_then(plain), end + 3)
        }
        [0x1b, ..] => (plain(KeyCode::Esc), 1),
        [b'\r' | b'\n', ..] => (plain(KeyCode::Enter), 1),
        [b'\t', ..] => (plain(KeyCode::Tab), 1),
        [0x7f | 0x08, ..] => (plain(KeyCode::Backspace), 1),
        [c @ 0x01..=0x1a, ..] => {
            let letter = char::from(b'a' + c - 1);
            (
                Some(KeyEvent::new(KeyCode::Char(letter), KeyModifiers::CONTROL)),
                1,
            )
        }
        [first, ..] => {
            let len = match first {
                0x00..=0x7f => 1,
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
            let text = bytes.get(..len).and_then(|b| std::str::from_utf8(b).ok());
            match text.and_then(|t| t.chars().next()) {
                Some(c) if !c.is_control() => (plain(KeyCode::Char(c)), len),
                _ => (None, 1),
            }
        }
        [] => (None, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(keys: &[KeyEvent]) -> String {
        keys.iter()
            .map(|k| match k.code {
                KeyCode::Char(c) => c,
                KeyCode::Enter => '⏎',
                KeyCode::Esc => '⎋',
                KeyCode::Up => '↑',
                _ => '·',
            })
            .collect()
    }

    #[test]
    fn keys_typed_during_the_query_are_kept_and_answers_taken_out() {
        // A `q` before the answers, a `j` between them, an arrow after: a sixel terminal
        // with 9x18 cells.
        let bytes = b"q\x1b[?62;4;22cj\x1b[6;18;9t\x1b[A\x1b[0n";
        let split = split_answers(bytes);
        assert_eq!(chars(&decode_keys(&split.rest)), "qj↑");
        assert!(split.responses.contains(&Response::Sixel));
        assert!(split.responses.contains(&Response::CellSize(Some((9, 18)))));
        assert!(split.responses.contains(&Response::Status));
        let picker = picker_from(&split.responses);
        assert_eq!(picker.protocol_type(), ProtocolType::Sixel);
        let cell = picker.font_size();
        assert_eq!((cell.width, cell.height), (9, 18));
    }

    #[test]
    fn kitty_answers_and_a_terminal_that_says_nothing() {
        let split = split_answers(b"\x1b_Gi=31;OK\x1b\\\x1b[?62c\x1b[6;20;10t\x1b[0n");
        assert!(split.rest.is_empty(), "{:?}", split.rest);
        assert_eq!(
            picker_from(&split.responses).protocol_type(),
            ProtocolType::Kitty
        );
        // Only the user's key came (no answer before the deadline): it is not lost.
        let split = split_answers(b"q");
        assert!(split.responses.is_empty());
        assert_eq!(chars(&decode_keys(&split.rest)), "q");
    }

    #[test]
    fn decoding_is_bounded_and_total() {
        assert_eq!(chars(&decode_keys("é\r\x1b".as_bytes())), "é⏎⎋");
        let ctrl_c = decode_keys(b"\x03");
        assert_eq!(ctrl_c[0].code, KeyCode::Char('c'));
        assert!(ctrl_c[0].modifiers.contains(KeyModifiers::CONTROL));
        // Cut or foreign sequences and stray bytes never panic nor loop.
        for junk in [
            &b"\x1b["[..],
            b"\x1b[1;5",
            b"\xff\xfe",
            b"\xe2\x82",
            b"\x1b_Gi=31;OK",
            b"\x00",
        ] {
            let _ = decode_keys(junk);
            let _ = split_answers(junk);
        }
    }

    #[test]
    fn reading_stops_at_the_deadline() {
        // A pipe nobody writes to: the read ends at the deadline with nothing.
        let (read, _write) = std::io::pipe().unwrap();
        let started = Instant::now();
        let got = read_until_status(&read, Instant::now() + Duration::from_millis(50));
        assert!(got.is_empty());
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
