"""Score predictions.csv against the reference labels (Codabench scoring program)."""
import csv
import json
import os
import sys

input_dir, output_dir = sys.argv[1], sys.argv[2]


def read(path):
    with open(path) as f:
        return {row["id"]: int(row["label"]) for row in csv.DictReader(f)}


truth = read(os.path.join(input_dir, "ref", "labels.csv"))
try:
    predicted = read(os.path.join(input_dir, "res", "predictions.csv"))
except FileNotFoundError:
    sys.exit("predictions.csv is missing from the submission")
missing = set(truth) - set(predicted)
if missing:
    sys.exit(f"{len(missing)} test events have no prediction")
correct = sum(predicted[k] == v for k, v in truth.items())
signal = [k for k, v in truth.items() if v == 1]
found = sum(predicted[k] == 1 for k in signal)
scores = {"accuracy": correct / len(truth), "efficiency": found / len(signal)}
with open(os.path.join(output_dir, "scores.json"), "w") as f:
    json.dump(scores, f)
with open(os.path.join(output_dir, "detailed_results.html"), "w") as f:
    f.write("<html><body><h1>Details</h1><p>%d of %d correct</p>"
            "<script>document.title='ran'</script></body></html>" % (correct, len(truth)))
print("scored", scores)
