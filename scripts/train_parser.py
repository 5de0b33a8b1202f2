"""Train the benchmark's scene parser and write it (weights + accuracy.json) to --out.

CPU, a usable parser in a few minutes:
    python scripts/train_parser.py --out runs/parser --scenes 60 --size 64 --steps 600 --eval-scenes 10
CUDA, the shipped parser (4.4 minutes on one H100):
    python scripts/train_parser.py --out tessera/assets/parser --device cuda --steps 16000 \
        --scenes 3000 --eval-scenes 80
A trained parser's accuracy on held-out renders, clean and blurred (as a VAE's round trip blurs objects):
    python scripts/train_parser.py --measure tessera/assets/parser --eval-scenes 80
Add --degrade P to train on a fraction P of the frames softened (blur, colour bleed, tint, noise).
"""

from tessera.eval.parser_train import main

if __name__ == "__main__":
    main()
