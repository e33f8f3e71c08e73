module flotilla/template-oracle

go 1.19
