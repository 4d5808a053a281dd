"""Data and training: calibration and training data sets (``data``), the
shapes10 data set the demo and tests make themselves (``shapes10``), and
fine-tuning with batch-norm re-estimation (``finetune``). Imports only
:mod:`itpl.util`."""
