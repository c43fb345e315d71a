#!/bin/sh
# Written by doit-stages (build = buildout): runs this release's .buildout/$STAGE/bin/<this name>;
# STAGE comes from shared/<stage>.env.
exec "$(dirname "$0")/../.buildout/${STAGE:?is not set: load shared/STAGE.env first}/bin/${0##*/}" "$@"
