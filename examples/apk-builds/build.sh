#!/bin/sh
# Builds one APK (simulated): sh build.sh PACKAGE
#
# A real one would run `./gradlew assembleRelease -Papp.id=$package`; this one prints Gradle-like
# progress for a couple of seconds and writes $BUILDS_DIR/$package.apk. "com.example.broken"
# does not compile. Every build appends "start" and "end" lines to $BUILDS_DIR/history.log.
set -eu

package="${1:-}"
builds="${BUILDS_DIR:-builds}"
step="${BUILD_STEP_SECONDS:-0.5}"

# The package arrives as one argument and never meets a shell, but it still names a file:
# accept only what an Android application id looks like (no "/", no "..").
case "$package" in
    "" | *[!A-Za-z0-9_.]* | .* | *. | *..*) bad=1 ;;
    *.*) bad=0 ;;
    *) bad=1 ;;
esac
if [ "$bad" = 1 ]; then
    echo "not an Android package name: '$package'" >&2
    exit 2
fi

mkdir -p "$builds"
history="$builds/history.log"
echo "$(date '+%Y-%m-%d %H:%M:%S') start $package job ${STOKER_JOB_ID:-manual}" >>"$history"
# The end line is written however the build ends: success, failure, or a TERM (timeout, cancel).
trap 'echo "$(date "+%Y-%m-%d %H:%M:%S") end $package job ${STOKER_JOB_ID:-manual}" >>"$history"' EXIT
trap 'exit 143' TERM INT

echo "building $package (job ${STOKER_JOB_ID:-manual}, attempt ${STOKER_JOB_ATTEMPT:-1})"
echo "> Task :app:preBuild"
sleep "$step"
echo "> Task :app:compileReleaseKotlin"
sleep "$step"
if [ "$package" = "com.example.broken" ]; then
    echo "e: src/main/java/MainActivity.kt:42:5 Unresolved reference: billingClient" >&2
    echo "> Task :app:compileReleaseKotlin FAILED"
    echo "BUILD FAILED" >&2
    exit 1
fi
echo "> Task :app:packageRelease"
sleep "$step"
# Write then rename: a download never gets half an APK.
printf 'fake APK of %s, built %s\n' "$package" "$(date '+%Y-%m-%d %H:%M:%S')" >"$builds/.$package.apk.tmp"
mv "$builds/.$package.apk.tmp" "$builds/$package.apk"
echo "BUILD SUCCESSFUL: $builds/$package.apk"
