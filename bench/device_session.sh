#!/bin/bash
# One GPU session's work in one command (README "On a GPU"), run by the `device` tool with
# carry=["device"] after `make device-data CKPT=...` here:
#   bash bench/device_session.sh bench 560     # pytest -m gpu, bench/gpu.py, then study presets
#   bash bench/device_session.sh compile 0     # bench/compile_step.py, then the 3x3 sweep timings
#   STUDY_PRESETS="study_snip" bash bench/device_session.sh study 560   # presets only
# $2: seconds from the start after which the study presets are stopped ($STUDY_PRESETS, side by
# side, each one multirun with up to 8 of its jobs at once, threads=1; past ~8 processes in all the
# H100 is saturated, so name few presets). Their finished jobs come back in
# $OUT/runs.tgz (results.json, for `python -m nmt_prune.study`), progress logs in progress.tgz.
# study/ stays on a warm machine: the next call within its idle time resumes the jobs.
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site device/whl/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/site:.
T0=$(date +%s); mkdir -p study
if [ "$1" = bench ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch,lightning,sacrebleu;print('torch',torch.__version__,'lightning',lightning.__version__,'sacrebleu',sacrebleu.__version__)"
  nproc
  timeout 200 python3 -m pytest -q -m gpu -p no:cacheprovider 2>&1 | tee $OUT/gpu_tests.log | tail -15
  timeout 330 python3 bench/gpu.py --data-root device/multi30k --checkpoint device/dense.ckpt --jobs 8 --out $OUT/gpu.json 2>&1 | tee $OUT/bench.log
fi
if [ "$1" = compile ]; then
  timeout 330 python3 bench/compile_step.py --data-root device/multi30k --checkpoint device/dense.ckpt --out $OUT/compile.json 2>&1 | grep -v Warn | tee $OUT/compile.log
fi
if [ "$1" = compile ] || [ "$1" = sweep ]; then
  export NMT_PRUNE_CACHE=/tmp/cache
  A="data=multi30k data.root=device/multi30k logger=csv trainer.max_epochs=1 prune.retrain.epochs=1"
  s=$(date +%s); python3 run.py -m prune.scheme=blind prune.pct=50 $A hydra.sweep.dir=/tmp/sw0 > $OUT/sweep0.log 2>&1; echo "dense + 1 job: $(( $(date +%s) - s )) s"
  s=$(date +%s); python3 run.py -m prune.scheme=blind,uniform,distribution prune.pct=50,80,90 $A hydra/launcher=joblib hydra.launcher.n_jobs=9 hydra.sweep.dir=/tmp/sw9 > $OUT/sweep9.log 2>&1; echo "3x3, n_jobs=9: $(( $(date +%s) - s )) s"
  s=$(date +%s); timeout $(( 575 - ($(date +%s) - T0) )) python3 run.py -m prune.scheme=blind,uniform,distribution prune.pct=50,80,90 $A hydra.sweep.dir=/tmp/sw1 > $OUT/sweep1.log 2>&1; echo "3x3, n_jobs=1: $(( $(date +%s) - s )) s"
  grep -h "test BLEU\|ok " /tmp/sw9/*/run.log /tmp/sw1/*/run.log 2>/dev/null | tail -20; grep -c '"status": "ok"' /tmp/sw9/*/results.json /tmp/sw1/*/results.json
  tar czf $OUT/sweeps.tgz $(find /tmp/sw0 /tmp/sw9 /tmp/sw1 -name results.json -o -name run.log) 2>/dev/null
  exit 0
fi
# the dense cache entry `make device-data` described (device/dense_entry), around device/dense.ckpt:
# presets that prune the converged dense model find it (adopted after re-measuring its val ppl)
if [ -f device/dense_entry/key ]; then
  E=device/cache/dense/$(cat device/dense_entry/key); mkdir -p $E
  cp device/dense_entry/config.yaml device/dense_entry/results.json $E/ && ln -f device/dense.ckpt $E/best.ckpt
  export NMT_PRUNE_CACHE=$PWD/device/cache
fi
LEFT=$(( $2 - ($(date +%s) - T0) ))
echo "study for ${LEFT}s"
if [ "$LEFT" -gt 30 ]; then
  for p in $STUDY_PRESETS; do
    n=$(python3 -c "import yaml,math;d=yaml.safe_load(open('conf/sweep/$p.yaml'))['hydra']['sweeper']['params'];print(min(8, math.prod(len(str(v).split(',')) for v in d.values())))")
    timeout $LEFT python3 run.py -m +sweep=$p data.root=device/multi30k threads=1 logger=csv \
      hydra.sweep.dir=study/$p hydra/launcher=joblib hydra.launcher.n_jobs=$n > study/$p.log 2>&1 &
  done
  wait
fi
python3 -m nmt_prune.study save study /tmp/runs
tar czf $OUT/runs.tgz -C /tmp runs 2>/dev/null
tar czf $OUT/progress.tgz $(find study -name "metrics*.csv" -o -name "*.log" -o -name results.json | grep -v "/csv/.*hparams") 2>/dev/null
ls study; grep -h "stopped\|test_bleu\|BLEU" study/*.log | tail -20
