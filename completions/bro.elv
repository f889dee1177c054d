
use builtin;
use str;

set edit:completion:arg-completer[bro] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'bro'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'bro'= {
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand daemon 'Run, start, stop or inspect the bro daemon'
            cand session 'Create, list, inspect and kill browser sessions'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'bro;daemon'= {
            cand --port 'TCP port of the steel API and CDP proxy (0 picks a free one)'
            cand --bind 'Address of the steel API; keep it on loopback'
            cand --max-sessions 'Most sessions live at once on this machine'
            cand --chromium 'Chromium to launch [default: BRO_CHROMIUM, /usr/bin/chromium, then PATH]'
            cand --restate-server 'restate-server to supervise [default: BRO_RESTATE_SERVER, bro''s install dir, PATH]'
            cand --restate-admin-url 'Use an existing Restate''s admin API instead of supervising one (with --restate-ingress-url)'
            cand --restate-ingress-url 'Use an existing Restate''s ingress (with --restate-admin-url)'
            cand --node 'This machine''s node name in Restate (the key of its Pool)'
            cand --api-key 'Require this key from TCP clients (steel-api-key header, or ?apiKey= on websockets); needed to bind a non-loopback address'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand start 'Start the daemon in the background; returns once it is healthy'
            cand stop 'Stop the daemon; its sessions are released unless --keep-sessions'
            cand status 'Show whether the daemon runs, its addresses and its Restate'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'bro;daemon;start'= {
            cand --port 'TCP port of the steel API and CDP proxy (0 picks a free one)'
            cand --bind 'Address of the steel API; keep it on loopback'
            cand --max-sessions 'Most sessions live at once on this machine'
            cand --chromium 'Chromium to launch [default: BRO_CHROMIUM, /usr/bin/chromium, then PATH]'
            cand --restate-server 'restate-server to supervise [default: BRO_RESTATE_SERVER, bro''s install dir, PATH]'
            cand --restate-admin-url 'Use an existing Restate''s admin API instead of supervising one (with --restate-ingress-url)'
            cand --restate-ingress-url 'Use an existing Restate''s ingress (with --restate-admin-url)'
            cand --node 'This machine''s node name in Restate (the key of its Pool)'
            cand --api-key 'Require this key from TCP clients (steel-api-key header, or ?apiKey= on websockets); needed to bind a non-loopback address'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'bro;daemon;stop'= {
            cand --keep-sessions 'Leave the browsers running; the next daemon re-adopts them'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'bro;daemon;status'= {
            cand --json 'Print JSON (pid, api_url, socket, version, restate.admin_url, ...)'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'bro;daemon;help'= {
            cand start 'Start the daemon in the background; returns once it is healthy'
            cand stop 'Stop the daemon; its sessions are released unless --keep-sessions'
            cand status 'Show whether the daemon runs, its addresses and its Restate'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'bro;daemon;help;start'= {
        }
        &'bro;daemon;help;stop'= {
        }
        &'bro;daemon;help;status'= {
        }
        &'bro;daemon;help;help'= {
        }
        &'bro;session'= {
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand create 'Start a session: a fresh Chromium with its own profile'
            cand list 'List sessions, oldest first'
            cand get 'Show one session; ended sessions stay visible'
            cand kill 'Release sessions: their browsers are stopped and their profiles deleted'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'bro;session;create'= {
            cand --timeout 'Release the session after this long (e.g. 90s, 10m, 2h); 0 means never'
            cand --width 'Window width in pixels'
            cand --height 'Window height in pixels'
            cand --user-agent 'User-Agent string of the browser'
            cand --proxy 'Proxy for the browser''s traffic (http://, https://, socks5://)'
            cand --session-id 'Use this id (a UUID); creating twice with one id returns the same session'
            cand --json 'Print the steel-browser JSON'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'bro;session;list'= {
            cand --status 'Only sessions with this status'
            cand --json 'Print the steel-browser JSON ({"sessions": [...]})'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'bro;session;get'= {
            cand --json 'Print the steel-browser JSON'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'bro;session;kill'= {
            cand --all 'Release every session that is not over'
            cand --json 'Print JSON'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'bro;session;help'= {
            cand create 'Start a session: a fresh Chromium with its own profile'
            cand list 'List sessions, oldest first'
            cand get 'Show one session; ended sessions stay visible'
            cand kill 'Release sessions: their browsers are stopped and their profiles deleted'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'bro;session;help;create'= {
        }
        &'bro;session;help;list'= {
        }
        &'bro;session;help;get'= {
        }
        &'bro;session;help;kill'= {
        }
        &'bro;session;help;help'= {
        }
        &'bro;completions'= {
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'bro;help'= {
            cand daemon 'Run, start, stop or inspect the bro daemon'
            cand session 'Create, list, inspect and kill browser sessions'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'bro;help;daemon'= {
            cand start 'Start the daemon in the background; returns once it is healthy'
            cand stop 'Stop the daemon; its sessions are released unless --keep-sessions'
            cand status 'Show whether the daemon runs, its addresses and its Restate'
        }
        &'bro;help;daemon;start'= {
        }
        &'bro;help;daemon;stop'= {
        }
        &'bro;help;daemon;status'= {
        }
        &'bro;help;session'= {
            cand create 'Start a session: a fresh Chromium with its own profile'
            cand list 'List sessions, oldest first'
            cand get 'Show one session; ended sessions stay visible'
            cand kill 'Release sessions: their browsers are stopped and their profiles deleted'
        }
        &'bro;help;session;create'= {
        }
        &'bro;help;session;list'= {
        }
        &'bro;help;session;get'= {
        }
        &'bro;help;session;kill'= {
        }
        &'bro;help;completions'= {
        }
        &'bro;help;help'= {
        }
    ]
    $completions[$command]
}
