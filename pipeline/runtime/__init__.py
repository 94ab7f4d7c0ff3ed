"""The stream runtime shared by every stage: consuming, offset bookkeeping, messages."""
