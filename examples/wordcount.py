"""Count words in the files given as arguments; write counts.csv."""

import collections
import csv
import sys

counts: collections.Counter[str] = collections.Counter()
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            counts.update(word.strip(".,;:!?\"'()").lower() for word in line.split())

with open("counts.csv", "w", newline="") as fh:
    writer = csv.writer(fh)
    writer.writerow(["word", "count"])
    for word, count in counts.most_common():
        writer.writerow([word, count])
print(f"{sum(counts.values())} words, {len(counts)} distinct; wrote counts.csv")
