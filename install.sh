#!/usr/bin/env bash
# install.sh: everything bro needs, idempotent and safe to rerun.
#
#   1. Debian's chromium (apt) when no Chromium is found;
#   2. restate-server, pinned, from npm (native binary, --ignore-scripts) into bro's data dir,
#      and rrweb with its player, pinned, from npm (the recorder and the replay page), and
#      playwright-core, pinned, from npm (`bro bench` drives its job benchmark with it);
#   3. the bro binary (cargo, --locked) into ~/.cargo/bin (or $BRO_BIN_DIR);
#   4. shell completions where bash, zsh and fish look for them;
#   5. with --test-deps, what the test suite drives besides: tmux (bro tui), zsh and fish
#      (the completions), python3's venv (the Python steel-sdk, schemathesis, the OTLP
#      receiver's opentelemetry-proto and grpcio), node and npm (the JS clients), curl (the
#      cluster test's TLS probes of Restate's fabric), Debian's prometheus (the metrics test
#      runs its own, on a free port). Each is installed with apt only when it is missing;
#      prometheus without recommends and with its service never started, then disabled (it
#      would listen on every address, port 9090), again on every rerun.
#
# Flags: --no-bro      install only what bro runs on (chromium, restate-server), not bro itself.
#        --test-deps   also install what `cargo test --locked` needs.
set -euo pipefail

RESTATE_VERSION="1.7.12"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
data_dir="${XDG_DATA_HOME:-$HOME/.local/share}/bro"
restate_dir="$data_dir/restate-server"
restate_bin="$restate_dir/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server"
RRWEB_VERSION="2.1.6"
rrweb_dir="$data_dir/rrweb"
# The version tests/compat/package.json pins (src/cli/bench/jobs.rs says it too).
PLAYWRIGHT_VERSION="1.65.1"
playwright_dir="$data_dir/playwright"
install_bro=1
test_deps=0
for arg in "$@"; do
  case "$arg" in
    --no-bro) install_bro=0 ;;
    --test-deps) test_deps=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

step() { printf '==> %s\n' "$*"; }
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# apt packages, installed together and only when something is missing.
apt_install() {
  [ "$#" -gt 0 ] || return 0
  command -v apt-get >/dev/null 2>&1 || { echo "install.sh: please install: $*" >&2; exit 1; }
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# apt packages without their recommends, their services kept from starting meanwhile by a
# policy-rc.d that refuses every start (removed after, and only when this script made it).
apt_install_no_start() {
  command -v apt-get >/dev/null 2>&1 || { echo "install.sh: please install: $*" >&2; exit 1; }
  local policy=/usr/sbin/policy-rc.d made=0 rc=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | sudo_if_needed tee "$policy" >/dev/null
    sudo_if_needed chmod 755 "$policy"
    made=1
    trap 'sudo_if_needed rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  sudo_if_needed apt-get update -qq || rc=$?
  [ "$rc" -ne 0 ] || sudo_if_needed env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null || rc=$?
  if [ "$made" -eq 1 ]; then
    sudo_if_needed rm -f "$policy"
    trap - EXIT
  fi
  return "$rc"
}

# Stops a package's service and keeps it from starting at boot, under systemd or sysv init;
# nothing when it is stopped and disabled already.
quiet_service() {
  local name="$1"
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    if systemctl is-enabled "$name" >/dev/null 2>&1 || systemctl is-active "$name" >/dev/null 2>&1; then
      sudo_if_needed systemctl disable --now "$name" >/dev/null 2>&1 \
        || echo "install.sh: could not stop the $name service: systemctl disable --now $name" >&2
    fi
  elif [ -x "/etc/init.d/$name" ]; then
    sudo_if_needed "/etc/init.d/$name" stop >/dev/null 2>&1 || true
    if command -v update-rc.d >/dev/null 2>&1; then
      sudo_if_needed update-rc.d "$name" disable >/dev/null 2>&1 || true
    fi
  fi
}

# 1. Chromium
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
  step "chromium: $(chromium --version 2>/dev/null | head -n1 || echo present)"
else
  step "chromium: installing Debian's chromium with apt"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  step "chromium: $(chromium --version 2>/dev/null | head -n1)"
fi

# npm_pinned WHAT DIR PACKAGE@VERSION...: installs pinned npm packages into DIR (its own
# package.json; no install scripts run).
npm_pinned() {
  local what="$1" dir="$2"; shift 2
  command -v npm >/dev/null 2>&1 || { echo "install.sh: npm is needed to install $what (apt-get install nodejs npm)" >&2; exit 1; }
  step "$what: installing from npm into $dir"
  mkdir -p "$dir"
  [ -f "$dir/package.json" ] || echo "{\"name\":\"bro-$(basename "$dir")\",\"private\":true}" > "$dir/package.json"
  (cd "$dir" && npm install --no-fund --no-audit --save-exact --ignore-scripts --loglevel=error "$@" >/dev/null)
}

# 2. restate-server (pinned; the native binary is called directly, not the node wrapper)
if [ -x "$restate_bin" ] && "$restate_bin" --version 2>/dev/null | grep -q "$RESTATE_VERSION"; then
  step "restate-server $RESTATE_VERSION: already in $restate_dir"
else
  npm_pinned "restate-server $RESTATE_VERSION" "$restate_dir" "@restatedev/restate-server@$RESTATE_VERSION"
  "$restate_bin" --version >/dev/null
fi

# 2b. rrweb (pinned): the recorder bro puts in recorded pages, and the player of its replay page
rrweb_ok() {
  for pkg in rrweb rrweb-player; do
    grep -q "\"version\": \"$RRWEB_VERSION\"" "$rrweb_dir/node_modules/$pkg/package.json" 2>/dev/null || return 1
  done
}
if rrweb_ok; then
  step "rrweb $RRWEB_VERSION: already in $rrweb_dir"
else
  npm_pinned "rrweb $RRWEB_VERSION" "$rrweb_dir" "rrweb@$RRWEB_VERSION" "rrweb-player@$RRWEB_VERSION"
  rrweb_ok
fi

# 2c. playwright-core (pinned; never a browser: --ignore-scripts, and bench passes Chromium's path)
if grep -q "\"version\": \"$PLAYWRIGHT_VERSION\"" "$playwright_dir/node_modules/playwright-core/package.json" 2>/dev/null; then
  step "playwright-core $PLAYWRIGHT_VERSION: already in $playwright_dir"
else
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm_pinned "playwright-core $PLAYWRIGHT_VERSION" "$playwright_dir" "playwright-core@$PLAYWRIGHT_VERSION"
fi

# 3. bro itself
if [ "$install_bro" -eq 1 ]; then
  bin_dir="${BRO_BIN_DIR:-$HOME/.cargo/bin}"
  step "bro: building (release, --locked) and installing into $bin_dir"
  (cd "$here" && cargo build --release --locked --quiet)
  mkdir -p "$bin_dir"
  install -m 0755 "$here/target/release/bro" "$bin_dir/bro.new" && mv -f "$bin_dir/bro.new" "$bin_dir/bro"
  case ":$PATH:" in *":$bin_dir:"*) ;; *) echo "note: add $bin_dir to your PATH" ;; esac

  # 4. completions
  bash_dir="${XDG_DATA_HOME:-$HOME/.local/share}/bash-completion/completions"
  zsh_dir="${XDG_DATA_HOME:-$HOME/.local/share}/zsh/site-functions"
  fish_dir="${XDG_CONFIG_HOME:-$HOME/.config}/fish/completions"
  mkdir -p "$bash_dir" "$zsh_dir" "$fish_dir"
  install -m 0644 "$here/completions/bro.bash" "$bash_dir/bro"
  install -m 0644 "$here/completions/_bro" "$zsh_dir/_bro"
  install -m 0644 "$here/completions/bro.fish" "$fish_dir/bro.fish"
  step "completions: bash, zsh and fish installed"
fi
# 5. What the tests drive besides bro (only with --test-deps)
if [ "$test_deps" -eq 1 ]; then
  missing=()
  for tool in tmux zsh fish curl; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  if command -v python3 >/dev/null 2>&1; then
    # Debian's python3 lacks venv and ensurepip until python3-venv is installed.
    probe="$(mktemp -d)"
    python3 -m venv "$probe/v" >/dev/null 2>&1 || missing+=(python3-venv)
    rm -rf "$probe"
  else
    missing+=(python3-venv)
  fi
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  if [ "${#missing[@]}" -gt 0 ]; then
    step "test tools: installing ${missing[*]} with apt"
    apt_install "${missing[@]}"
  fi
  # The metrics test runs /usr/bin/prometheus (or $BRO_PROMETHEUS) itself: the package's
  # service must not run. Installed without recommends (prometheus-node-exporter would listen
  # on *:9100) and with services kept from starting; then its service is stopped and
  # disabled, on this run and every later one while the marker says bro installed it.
  prometheus_marker="$data_dir/prometheus-installed-by-bro"
  if [ ! -x /usr/bin/prometheus ]; then
    step "test tools: installing Debian's prometheus with apt (its service not started)"
    apt_install_no_start prometheus
    mkdir -p "$data_dir" && touch "$prometheus_marker"
  fi
  if [ -e "$prometheus_marker" ]; then quiet_service prometheus; fi
  step "test tools: tmux, zsh, fish, curl, python3 venv, node $(node --version 2>/dev/null), npm $(npm --version 2>/dev/null), $(/usr/bin/prometheus --version 2>/dev/null | head -n1)"
fi
step "done"
