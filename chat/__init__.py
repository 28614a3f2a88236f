"""A chat room where @gpt replies stream into every open tab at once and stay in a database."""
