#!/usr/bin/env bash
# The device checks of a session that is lent a GPU, in one call (about 11 minutes on an
# H100-class machine with 16 cores), each step under its own time limit so that one slow
# step cannot eat the others' time. Figures land in $OUT (the device tool's output folder)
# or runs/gpu; copy them into docs/benchmarks_gpu.md.
#
#   bash benchmarks/gpu_session.sh            # everything
#   STEPS="check sharing" bash benchmarks/gpu_session.sh
#
# Steps:
#   check     benchmarks/check_gpu.py --no-compile: forward/backward, CUDA == CPU, bf16
#   suite     benchmarks/run_all.py --device cuda --only gpu (section f)
#   sharing   trials per hour with 1, 2, 4, 8 small_cnn trainings on one GPU, and the
#             device-share rule's choice beside them (issue 19)
#   workers   one 20-trial search with 1, 2, 4, 8 workers on the machine's CPUs (issue 19)
set -u
out="${OUT:-runs/gpu}"
mkdir -p "$out"
steps="${STEPS:-check suite sharing workers}"
status=0

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    case " $steps " in *" $name "*) ;; *) return 0 ;; esac
    echo "== $name (at most ${limit}s): $*"
    local start=$SECONDS
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    local code=$?
    echo "== $name: exit $code after $((SECONDS - start))s (log: $out/$name.log)"
    tail -n 25 "$out/$name.log"
    [ "$code" -eq 0 ] || status=1
}

python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
step check 150 python benchmarks/check_gpu.py --no-compile
step suite 240 python benchmarks/run_all.py --device cuda --only gpu --out "$out/suite" \
    --docs "$out/docs"
step sharing 150 python benchmarks/bench_gpu_sharing.py --device cuda --concurrent 1 2 4 8 \
    --json "$out/gpu_sharing.json"
step workers 150 python benchmarks/bench_workers.py --part search --workers 1 2 4 8 \
    --trials 16 --epochs 1 --json "$out/workers_cpus.json"
exit $status
