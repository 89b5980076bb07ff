import os


def read_lines(path):
    """Return the lines of a text file without their line endings."""
    with open(path) as f:
        return [line.rstrip("\n") for line in f]


def count_words(path):
    total = 0
    for line in read_lines(path):
        
    return total


if __name__ == "__main__":
    print(count_words(os.path.join(os.path.dirname(__file__), "demo.py")))
