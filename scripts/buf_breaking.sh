#!/usr/bin/env bash
# make lint: protos/ stays compatible with the previous commit (buf breaking, FILE rules:
# wire and generated-source compatibility), so clients we will never see keep compiling.
# A deliberate break is said so in the commit that makes it, with a trailer line
#   API-Break: <why, and what clients must do>
# which this check then prints instead of failing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(git rev-parse --is-shallow-repository) == true ]]; then
  echo "buf breaking: a shallow clone has no previous commit; run 'git fetch --unshallow'" >&2
  exit 1
fi
if ! git rev-parse --verify --quiet HEAD~1 >/dev/null; then
  echo "buf breaking: the first commit, nothing to compare with"
  exit 0
fi
reason=$(git log -1 --format=%B HEAD | sed -n 's/^API-Break:[[:space:]]*//p')
if [[ -n $reason ]]; then
  echo "buf breaking: not checked; HEAD says the break is deliberate: $reason"
  exit 0
fi
# The working tree's protos against HEAD~1's: on CI (a fresh clone) that is the newest
# commit against the one before it; locally, uncommitted edits are checked too.
npx --no-install buf breaking --against '.git#ref=HEAD~1'
