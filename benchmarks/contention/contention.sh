#!/bin/bash
# LeNet-5 training, 1 epoch of Fashion-MNIST: quiet (default threads) vs beside one busy core (default threads, and --threads 2)
cd "$(dirname "$0")/../.."
ips() { grep -a "training time" "$1" | sed 's/.*(\([0-9,]*\) images\/s).*/\1/' | tr -d ,; }
for r in 1 2 3; do
  ./convkit train lenet5 --epochs 1 --out /tmp/ct --overwrite --verbose 0 > /tmp/ct-q.log 2>&1; q=$(ips /tmp/ct-q.log)
  yes > /dev/null & Y=$!; sleep 1
  ./convkit train lenet5 --epochs 1 --out /tmp/ct --overwrite --verbose 0 > /tmp/ct-b.log 2>&1; b=$(ips /tmp/ct-b.log); th=$(grep -a "Threads:" /tmp/ct-b.log)
  ./convkit train lenet5 --epochs 1 --out /tmp/ct --overwrite --verbose 0 --threads 2 > /tmp/ct-b2.log 2>&1; b2=$(ips /tmp/ct-b2.log)
  kill $Y; wait $Y 2>/dev/null
  echo "round $r: quiet default $q img/s; busy default $b ($th); busy --threads 2 $b2"
done
