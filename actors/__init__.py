"""Reference services written as corps actor classes, using only the public ``runtime`` API.

* ``corps.examples.demo``: a bank account and a pricing service, and the steps ``corps demo`` walks through.
"""
