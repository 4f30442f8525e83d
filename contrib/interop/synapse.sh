#!/usr/bin/env bash
# Runs a Synapse for the cross-server tests, in the foreground:
#   synapse.sh DIR SERVER_NAME PORT CERT KEY CA [EXTRA_YAML]
# writes DIR/homeserver.yaml (and DIR/log.yaml, and DIR/signing.key unless
# there already is one, so a restart keeps the server's identity), then
# becomes Synapse (exec: the caller's child is Synapse itself, with no
# children of its own). It listens on 127.0.0.1:PORT only, HTTPS with
# CERT/KEY, client and federation APIs on that one port; it trusts CA (and
# only CA) for its outbound federation requests, may reach loopback
# addresses, and asks no key notary. The database (SQLite), media and log
# (DIR/homeserver.log, INFO, unbuffered) stay in DIR. EXTRA_YAML, a file,
# is appended to homeserver.yaml: a key it sets again wins (PyYAML keeps
# the last of duplicate keys). Registration is open and rate limits are
# out of the way. Synapse comes from contrib/interop/install.sh's venv
# (HEARTH_INTEROP_DIR as there).
set -euo pipefail

if [ $# -lt 6 ] || [ $# -gt 7 ]; then
    echo "usage: $0 DIR SERVER_NAME PORT CERT KEY CA [EXTRA_YAML]" >&2
    exit 2
fi
dir="$(cd "$1" && pwd)"
server_name="$2"
port="$3"
cert="$4"
key="$5"
ca="$6"
extra="${7:-}"
venv="${HEARTH_INTEROP_DIR:-$HOME/.cache/hearth-interop}/venv"
if [ ! -x "$venv/bin/python" ]; then
    echo "no Synapse venv at $venv: run contrib/interop/install.sh" >&2
    exit 1
fi

# N random bytes in hex.
random() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

# An ed25519 key in Synapse's format: "ed25519 KEY_ID SEED", the 32-byte
# seed in unpadded standard base64.
if [ ! -s "$dir/signing.key" ]; then
    echo "ed25519 a_$(random 2) $(head -c 32 /dev/urandom | base64 | tr -d '=\n')" >"$dir/signing.key"
fi

cat >"$dir/log.yaml" <<EOF
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: $dir/homeserver.log
    encoding: utf8
root:
  level: INFO
  handlers: [file]
disable_existing_loggers: false
EOF

# Rate limits no test reaches.
high='{per_second: 10000, burst_count: 100000}'
cat >"$dir/homeserver.yaml" <<EOF
server_name: "$server_name"
public_baseurl: "https://$server_name/"
pid_file: $dir/homeserver.pid
signing_key_path: $dir/signing.key
log_config: $dir/log.yaml
media_store_path: $dir/media
report_stats: false
enable_metrics: false
macaroon_secret_key: "$(random 16)"
form_secret: "$(random 16)"
registration_shared_secret: "$(random 16)"

listeners:
  - port: $port
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: true
    x_forwarded: false
    resources:
      - names: [client, federation]
        compress: false

tls_certificate_path: $cert
tls_private_key_path: $key

database:
  name: sqlite3
  args:
    database: $dir/homeserver.db

# Federation between loopback test servers under a throwaway CA.
federation_verify_certificates: true
federation_custom_ca_list: ["$ca"]
ip_range_blacklist: []
ip_range_whitelist: ["127.0.0.0/8", "::1/128"]
federation_ip_range_blacklist: []
trusted_key_servers: []
suppress_key_server_warning: true
allow_public_rooms_over_federation: true
allow_public_rooms_without_auth: true
use_presence: true
# Synapse keeps a finished /sync answer for 2 minutes and gives it again to
# an identical request: a test polling initial syncs for an EDU that came
# a moment after its first poll would see that first answer until then.
caches:
  sync_response_cache_duration: 0

enable_registration: true
enable_registration_without_verification: true

rc_message: $high
rc_registration: $high
rc_registration_token_validity: $high
rc_login:
  address: $high
  account: $high
  failed_attempts: $high
rc_joins:
  local: $high
  remote: $high
rc_joins_per_room: $high
rc_invites:
  per_room: $high
  per_user: $high
  per_issuer: $high
rc_3pid_validation: $high
rc_key_requests: $high
rc_media_create: $high
rc_presence:
  per_user: $high
rc_delayed_event_mgmt: $high
rc_room_creation: $high
rc_reports: $high
rc_user_directory: $high
rc_profile: $high
rc_admin_redaction: $high
rc_third_party_invite: $high
rc_federation:
  window_size: 1000
  sleep_limit: 10000
  sleep_delay: 0
  reject_limit: 100000
  concurrent: 10000
federation_rr_transactions_per_room_per_second: 10000
EOF
if [ -n "$extra" ]; then
    {
        echo
        echo "# From $extra:"
        cat "$extra"
    } >>"$dir/homeserver.yaml"
fi

cd "$dir"
exec "$venv/bin/python" -m synapse.app.homeserver --config-path "$dir/homeserver.yaml"
