# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_bro_global_optspecs
    string join \n v/verbose h/help V/version
end

function __fish_bro_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_bro_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_bro_using_subcommand
    set -l cmd (__fish_bro_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c bro -n "__fish_bro_needs_command" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c bro -n "__fish_bro_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c bro -n "__fish_bro_needs_command" -s V -l version -d 'Print version'
complete -c bro -n "__fish_bro_needs_command" -f -a "daemon" -d 'Run, start, stop or inspect the bro daemon'
complete -c bro -n "__fish_bro_needs_command" -f -a "session" -d 'Create, list, inspect and kill browser sessions'
complete -c bro -n "__fish_bro_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c bro -n "__fish_bro_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c bro -n "__fish_bro_using_subcommand daemon; and not __fish_seen_subcommand_from start stop status help" -l port -d 'TCP port of the steel API and CDP proxy (0 picks a free one)' -r
complete -c bro -n "__fish_bro_using_subcommand daemon; and not __fish_seen_subcommand_from start stop status help" -l bind -d 'Address of the steel API; keep it on loopback' -r
complete -c bro -n "__fish_bro_using_subcommand daemon; and not __fish_seen_subcommand_from start stop status help" -l max-sessions -d 'Most sessions live at once on this machine' -r
complete -c bro -n "__fish_bro_using_subcommand daemon; and not __fish_seen_subcommand_from start stop status help" -l chromium -d 'Chromium to launch [default: BRO_CHROMIUM, /usr/bin/chromium, then PATH]' -r -F
complete -c bro -n "__fish_bro_using_subcommand daemon; and not __fish_seen_subcommand_from start stop status help" -l restate-server -d 'restate-server to supervise [default: BRO_RESTATE_SERVER, bro\'s install dir, PATH]' -r -F
complete -c bro -n "__fish_bro_using_subcommand daemon; and not __fish_seen_subcommand_from start stop status help" -l restate-admin-url -d 'Use an existing Restate\'s admin API instead of supervising one (with --restate-ingress-url)' -r
complete -c bro -n "__fish_bro_using_subcommand daemon; and not __fish_seen_subcommand_from start stop status help" -l restate-ingress-url -d 'Use an existing Restate\'s ingress (with --restate-admin-url)' -r
complete -c bro -n "__fish_bro_using_subcommand daemon; and not __fish_seen_subcommand_from start stop status help" -l node -d 'This machine\'s node name in Restate (the key of its Pool)' -r
complete -c bro -n "__fish_bro_using_subcommand daemon; and not __fish_seen_subcommand_from start stop status help" -l api-key -d 'Require this key from TCP clients (steel-api-key header, or ?apiKey= on websockets); needed to bind a non-loopback address' -r
complete -c bro -n "__fish_bro_using_subcommand daemon; and not __fish_seen_subcommand_from start stop status help" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c bro -n "__fish_bro_using_subcommand daemon; and not __fish_seen_subcommand_from start stop status help" -s h -l help -d 'Print help'
complete -c bro -n "__fish_bro_using_subcommand daemon; and not __fish_seen_subcommand_from start stop status help" -s V -l version -d 'Print version'
complete -c bro -n "__fish_bro_using_subcommand daemon; and not __fish_seen_subcommand_from start stop status help" -f -a "start" -d 'Start the daemon in the background; returns once it is healthy'
complete -c bro -n "__fish_bro_using_subcommand daemon; and not __fish_seen_subcommand_from start stop status help" -f -a "stop" -d 'Stop the daemon; its sessions are released unless --keep-sessions'
complete -c bro -n "__fish_bro_using_subcommand daemon; and not __fish_seen_subcommand_from start stop status help" -f -a "status" -d 'Show whether the daemon runs, its addresses and its Restate'
complete -c bro -n "__fish_bro_using_subcommand daemon; and not __fish_seen_subcommand_from start stop status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c bro -n "__fish_bro_using_subcommand daemon; and __fish_seen_subcommand_from start" -l port -d 'TCP port of the steel API and CDP proxy (0 picks a free one)' -r
complete -c bro -n "__fish_bro_using_subcommand daemon; and __fish_seen_subcommand_from start" -l bind -d 'Address of the steel API; keep it on loopback' -r
complete -c bro -n "__fish_bro_using_subcommand daemon; and __fish_seen_subcommand_from start" -l max-sessions -d 'Most sessions live at once on this machine' -r
complete -c bro -n "__fish_bro_using_subcommand daemon; and __fish_seen_subcommand_from start" -l chromium -d 'Chromium to launch [default: BRO_CHROMIUM, /usr/bin/chromium, then PATH]' -r -F
complete -c bro -n "__fish_bro_using_subcommand daemon; and __fish_seen_subcommand_from start" -l restate-server -d 'restate-server to supervise [default: BRO_RESTATE_SERVER, bro\'s install dir, PATH]' -r -F
complete -c bro -n "__fish_bro_using_subcommand daemon; and __fish_seen_subcommand_from start" -l restate-admin-url -d 'Use an existing Restate\'s admin API instead of supervising one (with --restate-ingress-url)' -r
complete -c bro -n "__fish_bro_using_subcommand daemon; and __fish_seen_subcommand_from start" -l restate-ingress-url -d 'Use an existing Restate\'s ingress (with --restate-admin-url)' -r
complete -c bro -n "__fish_bro_using_subcommand daemon; and __fish_seen_subcommand_from start" -l node -d 'This machine\'s node name in Restate (the key of its Pool)' -r
complete -c bro -n "__fish_bro_using_subcommand daemon; and __fish_seen_subcommand_from start" -l api-key -d 'Require this key from TCP clients (steel-api-key header, or ?apiKey= on websockets); needed to bind a non-loopback address' -r
complete -c bro -n "__fish_bro_using_subcommand daemon; and __fish_seen_subcommand_from start" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c bro -n "__fish_bro_using_subcommand daemon; and __fish_seen_subcommand_from start" -s h -l help -d 'Print help'
complete -c bro -n "__fish_bro_using_subcommand daemon; and __fish_seen_subcommand_from start" -s V -l version -d 'Print version'
complete -c bro -n "__fish_bro_using_subcommand daemon; and __fish_seen_subcommand_from stop" -l keep-sessions -d 'Leave the browsers running; the next daemon re-adopts them'
complete -c bro -n "__fish_bro_using_subcommand daemon; and __fish_seen_subcommand_from stop" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c bro -n "__fish_bro_using_subcommand daemon; and __fish_seen_subcommand_from stop" -s h -l help -d 'Print help'
complete -c bro -n "__fish_bro_using_subcommand daemon; and __fish_seen_subcommand_from stop" -s V -l version -d 'Print version'
complete -c bro -n "__fish_bro_using_subcommand daemon; and __fish_seen_subcommand_from status" -l json -d 'Print JSON (pid, api_url, socket, version, restate.admin_url, ...)'
complete -c bro -n "__fish_bro_using_subcommand daemon; and __fish_seen_subcommand_from status" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c bro -n "__fish_bro_using_subcommand daemon; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c bro -n "__fish_bro_using_subcommand daemon; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c bro -n "__fish_bro_using_subcommand daemon; and __fish_seen_subcommand_from help" -f -a "start" -d 'Start the daemon in the background; returns once it is healthy'
complete -c bro -n "__fish_bro_using_subcommand daemon; and __fish_seen_subcommand_from help" -f -a "stop" -d 'Stop the daemon; its sessions are released unless --keep-sessions'
complete -c bro -n "__fish_bro_using_subcommand daemon; and __fish_seen_subcommand_from help" -f -a "status" -d 'Show whether the daemon runs, its addresses and its Restate'
complete -c bro -n "__fish_bro_using_subcommand daemon; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c bro -n "__fish_bro_using_subcommand session; and not __fish_seen_subcommand_from create list get kill help" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c bro -n "__fish_bro_using_subcommand session; and not __fish_seen_subcommand_from create list get kill help" -s h -l help -d 'Print help'
complete -c bro -n "__fish_bro_using_subcommand session; and not __fish_seen_subcommand_from create list get kill help" -s V -l version -d 'Print version'
complete -c bro -n "__fish_bro_using_subcommand session; and not __fish_seen_subcommand_from create list get kill help" -f -a "create" -d 'Start a session: a fresh Chromium with its own profile'
complete -c bro -n "__fish_bro_using_subcommand session; and not __fish_seen_subcommand_from create list get kill help" -f -a "list" -d 'List sessions, oldest first'
complete -c bro -n "__fish_bro_using_subcommand session; and not __fish_seen_subcommand_from create list get kill help" -f -a "get" -d 'Show one session; ended sessions stay visible'
complete -c bro -n "__fish_bro_using_subcommand session; and not __fish_seen_subcommand_from create list get kill help" -f -a "kill" -d 'Release sessions: their browsers are stopped and their profiles deleted'
complete -c bro -n "__fish_bro_using_subcommand session; and not __fish_seen_subcommand_from create list get kill help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from create" -l timeout -d 'Release the session after this long (e.g. 90s, 10m, 2h); 0 means never' -r
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from create" -l width -d 'Window width in pixels' -r
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from create" -l height -d 'Window height in pixels' -r
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from create" -l user-agent -d 'User-Agent string of the browser' -r
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from create" -l proxy -d 'Proxy for the browser\'s traffic (http://, https://, socks5://)' -r
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from create" -l session-id -d 'Use this id (a UUID); creating twice with one id returns the same session' -r
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from create" -l json -d 'Print the steel-browser JSON'
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from create" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from list" -l status -d 'Only sessions with this status' -r
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from list" -l json -d 'Print the steel-browser JSON ({"sessions": [...]})'
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from get" -l json -d 'Print the steel-browser JSON'
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from get" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from get" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from get" -s V -l version -d 'Print version'
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from kill" -l all -d 'Release every session that is not over'
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from kill" -l json -d 'Print JSON'
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from kill" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from kill" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from kill" -s V -l version -d 'Print version'
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from help" -f -a "create" -d 'Start a session: a fresh Chromium with its own profile'
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from help" -f -a "list" -d 'List sessions, oldest first'
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from help" -f -a "get" -d 'Show one session; ended sessions stay visible'
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from help" -f -a "kill" -d 'Release sessions: their browsers are stopped and their profiles deleted'
complete -c bro -n "__fish_bro_using_subcommand session; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c bro -n "__fish_bro_using_subcommand completions" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c bro -n "__fish_bro_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c bro -n "__fish_bro_using_subcommand completions" -s V -l version -d 'Print version'
complete -c bro -n "__fish_bro_using_subcommand help; and not __fish_seen_subcommand_from daemon session completions help" -f -a "daemon" -d 'Run, start, stop or inspect the bro daemon'
complete -c bro -n "__fish_bro_using_subcommand help; and not __fish_seen_subcommand_from daemon session completions help" -f -a "session" -d 'Create, list, inspect and kill browser sessions'
complete -c bro -n "__fish_bro_using_subcommand help; and not __fish_seen_subcommand_from daemon session completions help" -f -a "completions" -d 'Print a shell completion script'
complete -c bro -n "__fish_bro_using_subcommand help; and not __fish_seen_subcommand_from daemon session completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c bro -n "__fish_bro_using_subcommand help; and __fish_seen_subcommand_from daemon" -f -a "start" -d 'Start the daemon in the background; returns once it is healthy'
complete -c bro -n "__fish_bro_using_subcommand help; and __fish_seen_subcommand_from daemon" -f -a "stop" -d 'Stop the daemon; its sessions are released unless --keep-sessions'
complete -c bro -n "__fish_bro_using_subcommand help; and __fish_seen_subcommand_from daemon" -f -a "status" -d 'Show whether the daemon runs, its addresses and its Restate'
complete -c bro -n "__fish_bro_using_subcommand help; and __fish_seen_subcommand_from session" -f -a "create" -d 'Start a session: a fresh Chromium with its own profile'
complete -c bro -n "__fish_bro_using_subcommand help; and __fish_seen_subcommand_from session" -f -a "list" -d 'List sessions, oldest first'
complete -c bro -n "__fish_bro_using_subcommand help; and __fish_seen_subcommand_from session" -f -a "get" -d 'Show one session; ended sessions stay visible'
complete -c bro -n "__fish_bro_using_subcommand help; and __fish_seen_subcommand_from session" -f -a "kill" -d 'Release sessions: their browsers are stopped and their profiles deleted'
