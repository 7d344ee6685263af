#!/bin/sh
# honeyjet container entrypoint (runs under tini as PID 1).
#
#   docker run honeyjet                      -> honeyjet run
#   docker run honeyjet console adduser ana  -> honeyjet console adduser ana
#   docker run -it honeyjet sh               -> sh (anything that is not a honeyjet subcommand)
#
# When /config/honeyjet.toml exists (mount a directory on /config, read-only), the
# subcommands that read the operator file get `--config /config/honeyjet.toml` unless
# the command line already names one. Without it the usual layers apply: packaged
# defaults < /data/honeyjet.toml (written by `honeyjet init`) < HONEYJET_<SECTION>__<KEY>.
set -eu

config="${HONEYJET_CONFIG_FILE:-/config/honeyjet.toml}"

[ "$#" -gt 0 ] || set -- run

case "$1" in
    run|init|analyze|report|console|collector|export)
        wants_config=yes ;;
    evaluate|personas|-*)
        wants_config=no ;;
    *)
        exec "$@" ;;
esac

if [ "$wants_config" = yes ] && [ -f "$config" ]; then
    named=no
    for arg in "$@"; do
        case "$arg" in
            --config|--config=*) named=yes ;;
        esac
    done
    [ "$named" = yes ] || set -- "$@" --config "$config"
fi

exec honeyjet "$@"
