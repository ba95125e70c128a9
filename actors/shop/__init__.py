"""The reference shop: an order flow (stock, payment, shipping) in both styles.

``messages`` is shared by the orchestrated saga and the choreographed flow, so the two can be
checked to reach the same business outcome for the same inputs.
"""
