#!/bin/bash
# launch.sh NAME TRAIN EVAL [extra overrides...]
name=$1; data=$2; ev=$3; shift 3
cd /work/main
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
nohup lab pretrain --preset micro --data $data --out /tmp/micro/runs/$name --quiet \
  --eval_every 150 --eval_problems 16 --eval_data $ev --eval_max_new_tokens 192 \
  --eval_ladder "{ID: {lo: 2, hi: 6}, edge: {lo: 7, hi: 9}, hard: {lo: 10, hi: 14}}" \
  "$@" > /tmp/micro/runs/$name.log 2>&1 &
echo $! > /tmp/micro/runs/$name.pid
