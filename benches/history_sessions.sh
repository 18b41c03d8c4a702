#!/usr/bin/env bash
# 34 real sessions of a user project over 34 commits; from commit STEP_AT on, the project's GPT-2 MLP carries a
# redundant projection (the injected regression). Sessions 1..IMPORT_UPTO autosave JSON (to be imported with
# `tbench store import`), the rest write to the store with --tbench-store. Then:
#   tbench store import OUT_DIR/proj/.benchmarks --store sqlite:///OUT_DIR/store.sqlite
#   tbench trend --store sqlite:///OUT_DIR/store.sqlite; tbench history --store ... --out OUT_DIR/history
# Usage: benches/history_sessions.sh OUT_DIR (N, STEP_AT, IMPORT_UPTO, PY from the environment)
set -euo pipefail
OUT=${1:?out dir}; N=${N:-34}; STEP_AT=${STEP_AT:-20}; IMPORT_UPTO=${IMPORT_UPTO:-28}
PY=${PY:-python}
HERE=$(cd "$(dirname "$0")" && pwd)
rm -rf "$OUT"; mkdir -p "$OUT/proj/benches"; cd "$OUT/proj"
git init -q -b main; git config user.email bench@example.com; git config user.name bench
cp "$HERE/test_forward.py" benches/
cat > conftest.py <<'PY'
"""The project's model code: from the commit that added slow_gate.py on, GPT-2's MLP carries its gate."""
import importlib.util

if importlib.util.find_spec("slow_gate") is not None:
    import slow_gate  # noqa: F401
PY
cat > pytest.ini <<'INI'
[pytest]
pythonpath = .
tbench_models = gpt2
tbench_batch_sizes = 1
tbench_seq_lens = 32,64
tbench_rounds = 30
INI
echo "history of a model project" > CHANGES
git add -A; git commit -qm "start"
for i in $(seq 1 "$N"); do
  echo "change $i" >> CHANGES
  if [ "$i" -eq "$STEP_AT" ]; then
    cat > slow_gate.py <<'PY'
"""A redundant projection in GPT-2's MLP (as much work as c_fc, added as zero): the regression this history
must find (about +23% of the model's FLOPs)."""
from transformers.models.gpt2 import modeling_gpt2


def _forward(self, hidden_states):  # type: ignore[no-untyped-def]
    h = self.act(self.c_fc(hidden_states))
    extra = hidden_states @ self.c_fc.weight
    h = h + 0.0 * extra.sum(-1, keepdim=True)
    return self.dropout(self.c_proj(h))


modeling_gpt2.GPT2MLP.forward = _forward
PY
  fi
  git add -A ":!.benchmarks"; git commit -qm "commit $i"
  if [ "$i" -le "$IMPORT_UPTO" ]; then extra=(--benchmark-autosave); else extra=(--tbench-store "sqlite:///$OUT/store.sqlite"); fi
  HF_HUB_OFFLINE=1 "$PY" -m pytest benches/test_forward.py -p no:cacheprovider -q "${extra[@]}" > "$OUT/session_$i.log" 2>&1 || echo "session $i rc=$?"
  echo "$(date -u +%T) session $i done"
done
