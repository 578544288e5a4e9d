"""Ingestion program: import the participant's Model, fit it, predict the test events."""
import csv
import os
import sys
import time

input_dir, output_dir, program_dir, submission_dir = sys.argv[1:5]
sys.path.append(program_dir)
sys.path.append(submission_dir)


def read(name):
    with open(os.path.join(input_dir, name)) as f:
        return list(csv.DictReader(f))


train, test = read("train.csv"), read("test.csv")
X_train = [[float(r["x1"]), float(r["x2"])] for r in train]
y_train = [int(r["label"]) for r in train]
X_test = [[float(r["x1"]), float(r["x2"])] for r in test]

from model import Model  # noqa: E402  (the participant's code)

model = Model()
model.fit(X_train, y_train)
start = time.time()
predictions = model.predict(X_test)
duration = time.time() - start
with open(os.path.join(output_dir, "predictions.csv"), "w") as f:
    f.write("id,label\n")
    for row, label in zip(test, predictions):
        f.write(f"{row['id']},{int(label)}\n")
with open(os.path.join(output_dir, "metadata.json"), "w") as f:
    f.write('{"duration": %f}' % duration)
print("ingestion done in %.3f s" % duration)
