"""Console screens: review queue, finder, invoice detail, customer classes, modals."""
