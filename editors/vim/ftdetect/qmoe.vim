" Vim filetype detection for qmoe policies (qmoe-policy(5)).
au BufRead,BufNewFile *.qmoe setfiletype qmoe
