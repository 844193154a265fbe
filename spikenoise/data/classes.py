"""Class vocabularies."""
from __future__ import annotations

__all__ = ["GSCD_KEYWORDS", "GSCD_OTHER_WORDS", "GSCD_CLASSES", "SILENCE", "UNKNOWN", "FSDD_CLASSES"]

# The 10 keywords of the 12-class GSCD task, in the order used by the paper (000, II.A).
GSCD_KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
SILENCE, UNKNOWN = "silence", "unknown"
# Label index = position in this list (fixed: result files store integer labels).
GSCD_CLASSES = GSCD_KEYWORDS + [SILENCE, UNKNOWN]
# The other 25 words of GSCD v2 (35 words in all); they form the "unknown" class.
GSCD_OTHER_WORDS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
    "backward", "forward", "follow", "learn", "visual",
]
# FSDD: the 10 spoken digits, label = digit value (words as in GSCD's vocabulary).
FSDD_CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
