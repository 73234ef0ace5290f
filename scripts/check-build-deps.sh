#!/bin/sh
# Before `pip install` of mailwarden: pymilter (a dependency) is built from source against
# libmilter. When a build input is missing, say in one line which Debian packages to
# install, instead of a page of compiler output from pip. Exit 0 when all are there.
# Used by `make install` (and by scripts/quickstart.sh before its pip install).
PY=${PYTHON:-/usr/bin/python3}
MFAPI_H=${MFAPI_H:-/usr/include/libmilter/mfapi.h}  # (tests point it elsewhere)
missing=""
[ -e "$MFAPI_H" ] || missing="$missing libmilter-dev"
include=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null)
[ -n "$include" ] && [ -e "$include/Python.h" ] || missing="$missing python3-dev"
command -v cc >/dev/null 2>&1 || missing="$missing gcc"
if [ -n "$missing" ]; then
  echo "mailwarden needs pymilter, built against libmilter: install first: apt-get install$missing" >&2
  exit 1
fi
