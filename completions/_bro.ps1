
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'bro' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'bro'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'bro' {
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('daemon', 'daemon', [CompletionResultType]::ParameterValue, 'Run, start, stop or inspect the bro daemon')
            [CompletionResult]::new('session', 'session', [CompletionResultType]::ParameterValue, 'Create, list, inspect and kill browser sessions')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'bro;daemon' {
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'TCP port of the steel API and CDP proxy (0 picks a free one)')
            [CompletionResult]::new('--bind', '--bind', [CompletionResultType]::ParameterName, 'Address of the steel API; keep it on loopback')
            [CompletionResult]::new('--max-sessions', '--max-sessions', [CompletionResultType]::ParameterName, 'Most sessions live at once on this machine')
            [CompletionResult]::new('--chromium', '--chromium', [CompletionResultType]::ParameterName, 'Chromium to launch [default: BRO_CHROMIUM, /usr/bin/chromium, then PATH]')
            [CompletionResult]::new('--restate-server', '--restate-server', [CompletionResultType]::ParameterName, 'restate-server to supervise [default: BRO_RESTATE_SERVER, bro''s install dir, PATH]')
            [CompletionResult]::new('--restate-admin-url', '--restate-admin-url', [CompletionResultType]::ParameterName, 'Use an existing Restate''s admin API instead of supervising one (with --restate-ingress-url)')
            [CompletionResult]::new('--restate-ingress-url', '--restate-ingress-url', [CompletionResultType]::ParameterName, 'Use an existing Restate''s ingress (with --restate-admin-url)')
            [CompletionResult]::new('--node', '--node', [CompletionResultType]::ParameterName, 'This machine''s node name in Restate (the key of its Pool)')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'Require this key from TCP clients (steel-api-key header, or ?apiKey= on websockets); needed to bind a non-loopback address')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('start', 'start', [CompletionResultType]::ParameterValue, 'Start the daemon in the background; returns once it is healthy')
            [CompletionResult]::new('stop', 'stop', [CompletionResultType]::ParameterValue, 'Stop the daemon; its sessions are released unless --keep-sessions')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show whether the daemon runs, its addresses and its Restate')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'bro;daemon;start' {
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'TCP port of the steel API and CDP proxy (0 picks a free one)')
            [CompletionResult]::new('--bind', '--bind', [CompletionResultType]::ParameterName, 'Address of the steel API; keep it on loopback')
            [CompletionResult]::new('--max-sessions', '--max-sessions', [CompletionResultType]::ParameterName, 'Most sessions live at once on this machine')
            [CompletionResult]::new('--chromium', '--chromium', [CompletionResultType]::ParameterName, 'Chromium to launch [default: BRO_CHROMIUM, /usr/bin/chromium, then PATH]')
            [CompletionResult]::new('--restate-server', '--restate-server', [CompletionResultType]::ParameterName, 'restate-server to supervise [default: BRO_RESTATE_SERVER, bro''s install dir, PATH]')
            [CompletionResult]::new('--restate-admin-url', '--restate-admin-url', [CompletionResultType]::ParameterName, 'Use an existing Restate''s admin API instead of supervising one (with --restate-ingress-url)')
            [CompletionResult]::new('--restate-ingress-url', '--restate-ingress-url', [CompletionResultType]::ParameterName, 'Use an existing Restate''s ingress (with --restate-admin-url)')
            [CompletionResult]::new('--node', '--node', [CompletionResultType]::ParameterName, 'This machine''s node name in Restate (the key of its Pool)')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'Require this key from TCP clients (steel-api-key header, or ?apiKey= on websockets); needed to bind a non-loopback address')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'bro;daemon;stop' {
            [CompletionResult]::new('--keep-sessions', '--keep-sessions', [CompletionResultType]::ParameterName, 'Leave the browsers running; the next daemon re-adopts them')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'bro;daemon;status' {
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON (pid, api_url, socket, version, restate.admin_url, ...)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'bro;daemon;help' {
            [CompletionResult]::new('start', 'start', [CompletionResultType]::ParameterValue, 'Start the daemon in the background; returns once it is healthy')
            [CompletionResult]::new('stop', 'stop', [CompletionResultType]::ParameterValue, 'Stop the daemon; its sessions are released unless --keep-sessions')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show whether the daemon runs, its addresses and its Restate')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'bro;daemon;help;start' {
            break
        }
        'bro;daemon;help;stop' {
            break
        }
        'bro;daemon;help;status' {
            break
        }
        'bro;daemon;help;help' {
            break
        }
        'bro;session' {
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Start a session: a fresh Chromium with its own profile')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List sessions, oldest first')
            [CompletionResult]::new('get', 'get', [CompletionResultType]::ParameterValue, 'Show one session; ended sessions stay visible')
            [CompletionResult]::new('kill', 'kill', [CompletionResultType]::ParameterValue, 'Release sessions: their browsers are stopped and their profiles deleted')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'bro;session;create' {
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Release the session after this long (e.g. 90s, 10m, 2h); 0 means never')
            [CompletionResult]::new('--width', '--width', [CompletionResultType]::ParameterName, 'Window width in pixels')
            [CompletionResult]::new('--height', '--height', [CompletionResultType]::ParameterName, 'Window height in pixels')
            [CompletionResult]::new('--user-agent', '--user-agent', [CompletionResultType]::ParameterName, 'User-Agent string of the browser')
            [CompletionResult]::new('--proxy', '--proxy', [CompletionResultType]::ParameterName, 'Proxy for the browser''s traffic (http://, https://, socks5://)')
            [CompletionResult]::new('--session-id', '--session-id', [CompletionResultType]::ParameterName, 'Use this id (a UUID); creating twice with one id returns the same session')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the steel-browser JSON')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'bro;session;list' {
            [CompletionResult]::new('--status', '--status', [CompletionResultType]::ParameterName, 'Only sessions with this status')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the steel-browser JSON ({"sessions": [...]})')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'bro;session;get' {
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the steel-browser JSON')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'bro;session;kill' {
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Release every session that is not over')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'bro;session;help' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Start a session: a fresh Chromium with its own profile')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List sessions, oldest first')
            [CompletionResult]::new('get', 'get', [CompletionResultType]::ParameterValue, 'Show one session; ended sessions stay visible')
            [CompletionResult]::new('kill', 'kill', [CompletionResultType]::ParameterValue, 'Release sessions: their browsers are stopped and their profiles deleted')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'bro;session;help;create' {
            break
        }
        'bro;session;help;list' {
            break
        }
        'bro;session;help;get' {
            break
        }
        'bro;session;help;kill' {
            break
        }
        'bro;session;help;help' {
            break
        }
        'bro;completions' {
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'bro;help' {
            [CompletionResult]::new('daemon', 'daemon', [CompletionResultType]::ParameterValue, 'Run, start, stop or inspect the bro daemon')
            [CompletionResult]::new('session', 'session', [CompletionResultType]::ParameterValue, 'Create, list, inspect and kill browser sessions')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'bro;help;daemon' {
            [CompletionResult]::new('start', 'start', [CompletionResultType]::ParameterValue, 'Start the daemon in the background; returns once it is healthy')
            [CompletionResult]::new('stop', 'stop', [CompletionResultType]::ParameterValue, 'Stop the daemon; its sessions are released unless --keep-sessions')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show whether the daemon runs, its addresses and its Restate')
            break
        }
        'bro;help;daemon;start' {
            break
        }
        'bro;help;daemon;stop' {
            break
        }
        'bro;help;daemon;status' {
            break
        }
        'bro;help;session' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Start a session: a fresh Chromium with its own profile')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List sessions, oldest first')
            [CompletionResult]::new('get', 'get', [CompletionResultType]::ParameterValue, 'Show one session; ended sessions stay visible')
            [CompletionResult]::new('kill', 'kill', [CompletionResultType]::ParameterValue, 'Release sessions: their browsers are stopped and their profiles deleted')
            break
        }
        'bro;help;session;create' {
            break
        }
        'bro;help;session;list' {
            break
        }
        'bro;help;session;get' {
            break
        }
        'bro;help;session;kill' {
            break
        }
        'bro;help;completions' {
            break
        }
        'bro;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
