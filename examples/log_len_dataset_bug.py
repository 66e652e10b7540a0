"""A tutorial-style PyTorch training loop with the `len(training_set)` bug, writing its own CSV log.

The epoch's loss is the sum of the batch losses (each already a mean per character) divided by
`len(training_set)`, the number of *sequences*, instead of by the number of batches `len(train_loader)`.
The validation loss is divided correctly. The train curve therefore sits about B times too low: next to
the val curve it looks flat near zero, and train and val cannot be compared.

    python examples/log_len_dataset_bug.py --text timemachine.txt --out log.csv
    charrnn diagnose --log log.csv --vocab-size 67 --batch-size 32 --seq-len 35 --train-size 514 --val-size 57
    python examples/log_len_dataset_bug.py --text timemachine.txt --out log.csv --fixed   # the corrected loop

The script ends by printing that `charrnn diagnose` command with the sizes it used on your text.
"""

import argparse
import csv

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


class CharDataset(Dataset):
    """Non-overlapping windows of seq_len characters: (input ids, target ids shifted by one)."""

    def __init__(self, ids, seq_len):
        n = (len(ids) - 1) // seq_len
        self.x = ids[: n * seq_len].view(n, seq_len)
        self.y = ids[1: n * seq_len + 1].view(n, seq_len)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class CharRNN(nn.Module):
    def __init__(self, vocab_size, hidden_size):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, hidden_size)
        self.rnn = nn.RNN(hidden_size, hidden_size, batch_first=True)
        self.out = nn.Linear(hidden_size, vocab_size)

    def forward(self, x):  # x (B, T) -> logits (B, T, V); every sequence starts from a zero state
        h, _ = self.rnn(self.embed(x))
        return self.out(h)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--text", required=True, help="a UTF-8 text file")
    p.add_argument("--out", default="log.csv", help="where the CSV log goes")
    p.add_argument("--fixed", action="store_true", help="divide by len(train_loader) (the fix)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=35)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--max-chars", type=int, default=20000, help="use the first N characters")
    args = p.parse_args(argv)

    torch.manual_seed(0)
    text = open(args.text, encoding="utf-8").read()[: args.max_chars]
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text])
    cut = int(len(ids) * 0.9)
    training_set = CharDataset(ids[:cut], args.seq_len)
    validation_set = CharDataset(ids[cut:], args.seq_len)
    train_loader = DataLoader(training_set, batch_size=args.batch_size, shuffle=True)
    val_loader = DataLoader(validation_set, batch_size=args.batch_size)

    model = CharRNN(len(chars), args.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    criterion = nn.CrossEntropyLoss()  # mean over the B*T characters of a batch

    with open(args.out, "w", newline="") as f:
        log = csv.writer(f)
        log.writerow(["epoch", "train_loss", "val_loss"])
        for epoch in range(1, args.epochs + 1):
            epoch_training_loss = 0.0
            model.train()
            for inputs, targets in train_loader:
                logits = model(inputs)
                loss = criterion(logits.reshape(-1, len(chars)), targets.reshape(-1))
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                epoch_training_loss += loss.item()

            epoch_validation_loss = 0.0
            model.eval()
            with torch.no_grad():
                for inputs, targets in val_loader:
                    logits = model(inputs)
                    epoch_validation_loss += criterion(logits.reshape(-1, len(chars)), targets.reshape(-1)).item()

            if args.fixed:
                train_loss = epoch_training_loss / len(train_loader)
            else:
                train_loss = epoch_training_loss / len(training_set)  # BUG: sequences, not batches
            val_loss = epoch_validation_loss / len(val_loader)
            log.writerow([epoch, train_loss, val_loss])
            print(f"epoch {epoch}: train loss {train_loss:.4f}, val loss {val_loss:.4f}")
    print(f"charrnn diagnose --log {args.out} --vocab-size {len(chars)} --batch-size {args.batch_size} "
          f"--seq-len {args.seq_len} --train-size {len(training_set)} --val-size {len(validation_set)}")


if __name__ == "__main__":
    main()
