"""Pictures for people: training curves, evaluation plots, evidence montages."""
