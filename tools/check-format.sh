#!/bin/sh
# The C sources as clang-format 14 formats them (.clang-format): lists the files that
# differ and fails. Run from anywhere; CI runs it after the build (.ci/run).
# Fix with: clang-format-14 -i FILE...
set -e
cd "$(dirname "$0")/.."
cf=${CLANG_FORMAT:-clang-format-14}
command -v "$cf" >/dev/null 2>&1 || { echo "check-format: $cf not found (Debian package clang-format-14)" >&2; exit 2; }
case "$("$cf" --version)" in
*" version 14."*) ;;
*) echo "check-format: $cf is not clang-format 14: $("$cf" --version)" >&2; exit 2 ;;
esac
bad=0
for f in $(git ls-files 'src/*.c' 'src/*.h' 'tests/unit/*.c' 'tests/unit/*.h'); do
	if ! "$cf" --dry-run --Werror "$f" >/dev/null 2>&1; then
		echo "check-format: $f is not formatted (clang-format-14 -i $f)"
		bad=1
	fi
done
[ $bad -eq 0 ] && echo "check-format: every C file is formatted"
exit $bad
