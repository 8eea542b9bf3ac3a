#!/bin/sh
# Create the secret files compose.yaml mounts (./secrets/*), each from `openssl rand`.
# Run from the directory of compose.yaml: sh deploy/make-secrets.sh
# An existing file is kept (delete it, or overwrite it by hand, to rotate that secret).
set -eu

dir=secrets
umask 077
mkdir -p "$dir"
chmod 700 "$dir"  # only the deploying user lists and reads them on the host

secret() {  # secret NAME CONTENT...
    name=$1
    shift
    if [ -e "$dir/$name" ]; then
        echo "kept    $dir/$name"
    else
        printf '%s\n' "$*" >"$dir/$name"
        echo "created $dir/$name"
    fi
}

for name in postgres_password redis_password slotsync_webhook_secret slotsync_proposal_secret; do
    secret "$name" "$(openssl rand -hex 32)"
done
# One consumer key with the FHIR scopes, one operator key for /admin and /metrics.
secret slotsync_api_keys "$(printf '{"%s": "%s", "%s": "%s"}' \
    "$(openssl rand -hex 32)" \
    "system/Appointment.read system/Appointment.write system/Patient.write system/Coverage.write" \
    "$(openssl rand -hex 32)" "slotsync/admin slotsync/metrics")"
secret flower_basic_auth "ops:$(openssl rand -hex 16)"

# Compose (without Swarm) bind-mounts each file as it is, and the containers read them as
# their own users (slotsync 10001, postgres and redis 999): the files must be readable by
# others; the directory above keeps other users of this host out.
chmod 644 "$dir"/*
