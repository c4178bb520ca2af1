"""Executing workflows: the queue and its slots, and one child process's life."""
