"""The 32-slot search space and the networks it describes: slot names (``slots``), layer kinds
(``layers``), specs to torch modules and their counts (``arch``), the conditional space
(``space``). Imports nothing else of the package.
"""
