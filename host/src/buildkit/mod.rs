//! BuildKit client (placeholder; being written).
