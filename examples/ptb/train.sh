# Sourced by run.sh and compare.sh (RNNKIT and TIME set): train(), which starts a run or continues
# one.
# A run folder that already holds a run is continued for another TIME (an interrupted run goes
# on); remove it to start afresh, e.g. after a TIME=20s check.
train() {   # RUN_FOLDER CORPUS [train's options]
    run=$1
    shift
    if [ -f "$run/latest.h5" ]; then
        "$RNNKIT" train --resume "$run" --max-time "$TIME"
    else
        "$RNNKIT" train "$@" -o "$run" --max-time "$TIME"
    fi
}
