"""Scoring program: accuracy of the ingestion's predictions, and its predict time."""
import csv
import json

with open("/app/input/ref/test_labels.csv") as f:
    truth = {r["id"]: int(r["label"]) for r in csv.DictReader(f)}
with open("/app/input/res/predictions.csv") as f:
    predicted = {r["id"]: int(r["label"]) for r in csv.DictReader(f)}
with open("/app/input/res/metadata.json") as f:
    duration = json.load(f)["duration"]
accuracy = sum(predicted.get(k) == v for k, v in truth.items()) / len(truth)
with open("/app/output/scores.json", "w") as f:
    json.dump({"accuracy": accuracy, "duration": duration}, f)
