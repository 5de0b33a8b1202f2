"""Train the benchmark's scene parser and write it (weights + accuracy.json) to --out.

CPU, a usable parser in a few minutes:
    python scripts/train_parser.py --out runs/parser --scenes 60 --size 64 --steps 600 --eval-scenes 10
CUDA, the shipped parser (under 8 minutes on one H100):
    python scripts/train_parser.py --out tessera/assets/parser --device cuda
"""

from tessera.eval.parser_train import main

if __name__ == "__main__":
    main()
