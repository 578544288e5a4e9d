"""A starting model: predict signal when x1 + x2 is above a threshold learned from the data."""


class Model:
    def fit(self, X, y):
        best = (0, 0.0)
        for step in range(0, 201):
            cut = step / 100
            correct = sum((a + b > cut) == bool(t) for (a, b), t in zip(X, y))
            best = max(best, (correct, cut))
        self.cut = best[1]

    def predict(self, X):
        return [int(a + b > self.cut) for a, b in X]
