"""Kopf operator for SentimentModel resources."""
