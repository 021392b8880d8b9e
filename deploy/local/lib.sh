# Shared set-up for deploy/local/run and deploy/local/test: installs what is missing and starts
# what is not running. Safe to run again on a machine where everything is there already.
# shellcheck shell=bash

PG_HOST=127.0.0.1
PG_PORT=5432
NATS_PORT=4222

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    as_root apt-get update -qq || die "apt-get update failed"
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null \
    || die "apt-get install $* failed"
}

ensure_packages() {
  local missing=()
  command -v psql >/dev/null 2>&1 && ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing+=(postgresql postgresql-client)
  command -v pgbench >/dev/null 2>&1 || missing+=(postgresql-contrib)
  [ -x /usr/sbin/nats-server ] || command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
  command -v adb >/dev/null 2>&1 || missing+=(adb)
  # A C compiler: the linker driver for every Rust binary, and the build of mimalloc.
  command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
  command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
  pkg-config --exists libusb-1.0 2>/dev/null || missing+=(libusb-1.0-0-dev)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt_install "${missing[@]}"
  fi
  command -v cargo >/dev/null 2>&1 || die "cargo is missing: install the Rust toolchain (rustup) first"
  # The test command runs cargo fmt and cargo clippy: a minimal rustup profile lacks both.
  if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    command -v rustup >/dev/null 2>&1 || die "cargo fmt or cargo clippy is missing and there is no rustup to add them"
    log "adding rustfmt and clippy (rustup)"
    rustup component add rustfmt clippy || die "rustup component add rustfmt clippy failed"
  fi
}

# What the USB bench (tests/usb-vm/run) needs: qemu (software emulation), busybox and cpio for
# its initramfs, lsusb. `usbvm_unsupported` succeeds, printing why, when this machine
# fundamentally cannot run it (the guest is Debian's amd64 kernel running host-built binaries;
# no /dev/kvm is fine: the bench uses software emulation).
usbvm_unsupported() {
  if [ "$(uname -m)" != x86_64 ]; then echo "the host is $(uname -m), the guest kernel is amd64"; return 0; fi
  if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
    echo "no apt/dpkg to fetch Debian's kernel package"; return 0
  fi
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
    echo "neither root nor sudo to install qemu"; return 0
  fi
  return 1
}

ensure_usbvm_packages() {
  local missing=()
  command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
  [ -x /bin/busybox ] || missing+=(busybox-static)
  command -v cpio >/dev/null 2>&1 || missing+=(cpio)
  command -v lsusb >/dev/null 2>&1 || missing+=(usbutils)
  # systemd-udevd, run in the guest to apply the agent package's udev rule.
  [ -x /lib/systemd/systemd-udevd ] || [ -x /usr/lib/systemd/systemd-udevd ] || missing+=(udev)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} (USB bench)"
    apt_install --no-install-recommends "${missing[@]}"
  fi
}

# What deploy/package/{build,check} need besides cargo: dpkg-shlibdeps (the packages'
# library dependencies), strip, lintian and systemd-analyze.
ensure_package_tools() {
  local missing=()
  command -v dpkg-shlibdeps >/dev/null 2>&1 || missing+=(dpkg-dev)
  command -v strip >/dev/null 2>&1 || missing+=(binutils)
  command -v lintian >/dev/null 2>&1 || missing+=(lintian)
  command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt_install --no-install-recommends "${missing[@]}"
  fi
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() {
  local host=$1 port=$2 what=$3 i
  for i in $(seq 1 100); do
    port_open "$host" "$port" && return 0
    sleep 0.2
  done
  die "$what did not start listening on $host:$port"
}

ensure_postgres() {
  if ! port_open "$PG_HOST" "$PG_PORT"; then
    log "starting PostgreSQL"
    local version
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    [ -n "$version" ] || die "no PostgreSQL cluster found under /etc/postgresql"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start \
      || die "could not start PostgreSQL $version/main"
    wait_port "$PG_HOST" "$PG_PORT" PostgreSQL
  fi
  # A fresh Debian cluster asks for passwords on TCP. For this local development set-up, trust
  # loopback connections (never do this on a shared host).
  if ! psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
    log "allowing trusted loopback connections to PostgreSQL (local development only)"
    local hba
    hba=$(as_root runuser -u postgres -- psql -Atqc 'show hba_file') || die "cannot reach PostgreSQL as the postgres user"
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    as_root runuser -u postgres -- psql -Atqc 'select pg_reload_conf()' >/dev/null
    psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -Atqc 'select 1' >/dev/null \
      || die "PostgreSQL still refuses postgres@$PG_HOST"
  fi
}

ensure_database() {
  local name=$1
  if [ "$(psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -Atqc "select 1 from pg_database where datname = '$name'")" != 1 ]; then
    log "creating database $name"
    psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -qc "create database \"$name\"" >/dev/null
  fi
}

ensure_nats() {
  if ! port_open 127.0.0.1 "$NATS_PORT"; then
    log "starting nats-server with JetStream"
    local bin
    bin=$(command -v nats-server || echo /usr/sbin/nats-server)
    as_root mkdir -p /var/lib/nats-server /var/log
    as_root start-stop-daemon --start --oknodo --background --exec "$bin" -- \
      -a 127.0.0.1 -p "$NATS_PORT" -js -sd /var/lib/nats-server -l /var/log/nats-server.log \
      || die "could not start nats-server"
    wait_port 127.0.0.1 "$NATS_PORT" nats-server
  fi
}

ensure_all() {
  ensure_packages
  ensure_postgres
  ensure_nats
}

# Supervision for deploy/local/run and deploy/local/cluster: `supervise NAME PID LOG ...`
# (triples) waits until one of these processes exits, then says which, with its exit status and
# the last lines of its log, and returns 1 (the caller's EXIT trap stops the rest). A signal
# (Ctrl-C, TERM) interrupts the wait: the caller's trap runs and the script exits.
supervise() {
  local -a names=() pids=() logs=()
  while [ "$#" -ge 3 ]; do names+=("$1"); pids+=("$2"); logs+=("$3"); shift 3; done
  [ "${#pids[@]}" -gt 0 ] || die "supervise: nothing to supervise"
  local done_pid status i
  while :; do
    status=0
    done_pid=
    wait -n -p done_pid "${pids[@]}" || status=$?
    for i in "${!pids[@]}"; do
      if [ "${pids[$i]}" = "$done_pid" ] || ! kill -0 "${pids[$i]}" 2>/dev/null; then
        [ "${pids[$i]}" = "$done_pid" ] || status=unknown
        printf 'error: %s (pid %s) exited with status %s; the end of %s:\n' \
          "${names[$i]}" "${pids[$i]}" "$status" "${logs[$i]}" >&2
        tail -n "${SUPERVISE_TAIL:-20}" "${logs[$i]}" 2>/dev/null | sed 's/^/  | /' >&2
        return 1
      fi
    done
    # Woken without any of them gone (not our children any more): look again in a second.
    [ -n "$done_pid" ] || sleep 1
  done
}

# Debian's promtool (package `prometheus`) for deploy/prometheus/check (the alert rules, their
# unit tests and the Grafana dashboard's queries) and the /metrics lint of
# coordinator/tests/metrics.rs; about 10 s to install.
ensure_promtool() {
  command -v promtool >/dev/null 2>&1 && return 0
  log "installing prometheus (for promtool)"
  apt_install --no-install-recommends prometheus
}

# Debian's chromium and chromium-driver for the console's browser tests
# (coordinator/tests/console_browser.rs, tests/e2e/tests/system/console.rs); about 25 s to
# install on a fresh machine.
ensure_chromium() {
  local missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt_install --no-install-recommends "${missing[@]}"
  fi
}
