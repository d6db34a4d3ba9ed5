#!/bin/sh
# Best practice (b): writes the server configuration that lists the one program a `command`
# target may run: backup_and_reboot.py (beside this script), with CLOUD_API_URL pointing at
# the cloud API (default: the local stand-in, cloud_api_standin.py). Usage:
#   write-config.sh FILE
set -eu
out=${1:?usage: write-config.sh FILE}
here=$(cd "$(dirname "$0")" && pwd)
# The interpreter itself (not a shim or wrapper: the program runs with a minimal environment).
python=$(python3 -c "import sys; print(sys.executable)")
api=${CLOUD_API_URL:-http://127.0.0.1:9100/}
cat > "$out" <<TOML
# Programs that \`command\` targets may run; the API can only name them.
[targets.commands.cvm-backup-reboot]
program = "$python"
args = ["$here/backup_and_reboot.py"]
timeout_ms = 60000
env = { CLOUD_API_URL = "$api", CLOUD_REGION = "ap-guangzhou" }
TOML
echo "wrote $out"
