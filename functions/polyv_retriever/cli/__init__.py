"""The operator CLI, ``polyv-retriever``: the same core as the Lambdas."""
